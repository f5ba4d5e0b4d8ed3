"""Setting up and rotating keys on disk: a key store per organisation and the address book.

Directory layout::

    <dir>/address_book.json    the public directory (public keys, functional addresses)
    <dir>/<org number>/        that organisation's own key store (0700; files 0600)

In a real federation each organisation's store sits on its own servers; for the demo they share
one parent directory, which changes nothing about who may read what.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from notifiers.address_book import AddressBook, Organisation, load_address_book, save_address_book
from notifiers.keystore import INDEX_FILE, KeyStore

ADDRESS_BOOK_FILE = "address_book.json"


def address_book_path(directory: Path) -> Path:
    return directory / ADDRESS_BOOK_FILE


def key_store_path(directory: Path, org_number: str) -> Path:
    return directory / org_number


def load_directory(directory: Path) -> AddressBook:
    """The address book kept in `directory`, or an empty one."""
    path = address_book_path(directory)
    return load_address_book(path) if path.is_file() else AddressBook()


def open_key_store(directory: Path, org_number: str) -> KeyStore:
    return KeyStore(key_store_path(directory, org_number))


def init_demo_keys(directory: Path, organisations: Iterable[Organisation], *,
                   now: datetime | None = None) -> AddressBook:
    """Give each organisation a key store and list it in the address book; return the book.

    Idempotent: an organisation that already has a store keeps its keys (only its name and
    addresses are refreshed), so running it twice never makes existing messages unreadable.
    """
    directory.mkdir(parents=True, exist_ok=True)
    moment = now or datetime.now(UTC)
    book = load_directory(directory)
    for organisation in organisations:
        path = key_store_path(directory, organisation.org_number)
        store = (KeyStore(path) if (path / INDEX_FILE).exists()
                 else KeyStore.create(path, organisation.org_number, now=moment))
        book = book.with_organisation(organisation).with_keys(organisation.org_number, store.public_keys())
    save_address_book(book, address_book_path(directory))
    return book


def rotate_keys(directory: Path, org_number: str, *, now: datetime | None = None) -> AddressBook:
    """Give `org_number` a new current key pair; the old public keys stay listed, retired."""
    book = load_directory(directory)
    if book.get(org_number) is None:
        raise LookupError(f"{org_number} is not in the address book")
    store = open_key_store(directory, org_number)
    keys = store.rotate(now=now)
    book = book.with_keys(org_number, keys)
    save_address_book(book, address_book_path(directory))
    return book
