"""The federation as the marketplace sees it: the address book (public keys, functional
addresses) and the marketplace's own signing keys.

- Organisations: the 21 regions and the marketplace itself (the national coordination function,
  which sends match notices and signs the receipts of submissions it refuses to route). The
  marketplace's organisation number is synthetic: a valid legal-person number (third digit 2,
  correct check digit) that belongs to no real body.
- Keys: provisioned on first use (`notifiers.provisioning.init_demo_keys`, idempotent) under
  `<state dir>/keys`. The marketplace opens only its *own* key store; it never decrypts a message
  between parties, it only checks signatures against the address book.
- Units: an offer names its unit by HSA-id, `SE<org number without dash>-<unit>`. A unit resolves
  to the organisation whose number is embedded in its HSA-id, and only if that is the region that
  published the offer; it is then listed as a functional address of that organisation (and the
  address book saved), so that senders can address it and the unit can open what it receives.
- Freshness: every process (each notifier, each party's system) holds a copy of the address book,
  and a unit is listed by whichever notifier first routes to it. A copy is therefore never taken
  as complete: an address or key it lacks is looked up again in the book on disk (`AddressBookFile`)
  before anything is refused. The listing is saved before the message that needs it is routed, so
  a receiver that looks again always finds it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog

from matchers.reference import regions
from notifiers.address_book import AddressBook, Organisation, OrganisationEntry, save_address_book
from notifiers.book_file import AddressBookFile as AddressBookFile
from notifiers.identifiers import functional_address
from notifiers.keystore import KeyStore
from notifiers.provisioning import address_book_path, init_demo_keys, load_directory, open_key_store
from notifiers.units import UnknownUnit as UnknownUnit
from notifiers.units import unit_org_number as unit_org_number
from notifiers.units import with_unit as with_unit

log = structlog.get_logger(__name__)

MARKETPLACE_ORG = "202100-9994"
MARKETPLACE = Organisation(org_number=MARKETPLACE_ORG, name="NVF Marketplace (national coordination)",
                           addresses=(functional_address(MARKETPLACE_ORG),))


def region_organisations() -> list[Organisation]:
    """The 21 regions, each with one functional address for its brokering function."""
    return [Organisation(org_number=r.org_number, name=r.name, code=r.code,
                         addresses=(functional_address(r.org_number),))
            for r in regions().values()]


def federation_organisations() -> list[Organisation]:
    return [*region_organisations(), MARKETPLACE]


def key_directory(state_dir: Path) -> Path:
    return state_dir / "keys"


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Processes on one host that share a key directory take turns to change it: two workers
    starting at once must not both create an organisation's keys, or both rewrite the book."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(book: AddressBook, wanted: list[Organisation]) -> bool:
    return all((entry := book.get(o.org_number)) is not None and entry.keys for o in wanted)


def ensure_keys(directory: Path, organisations: Iterable[Organisation] | None = None) -> AddressBook:
    """The address book in `directory`, provisioning keys for whoever lacks them (demo set-up)."""
    wanted = list(organisations or federation_organisations())
    book = load_directory(directory)
    if _complete(book, wanted):
        return book
    with _directory_lock(directory):
        book = load_directory(directory)
        if _complete(book, wanted):
            return book
        log.info("federation.keys_provisioned", directory=str(directory), organisations=len(wanted))
        return init_demo_keys(directory, wanted)


class Federation:
    """The address book and the marketplace's signing keys, loaded on first use and cached."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._book: AddressBook | None = None
        self._file = AddressBookFile(directory)
        self._own: KeyStore | None = None

    @property
    def book(self) -> AddressBook:
        if self._book is None:
            self._book = ensure_keys(self.directory)
            self._file.adopt(self._book)
        return self._book

    def fresh_book(self) -> AddressBook:
        """The book as it is on disk now (re-read only if it changed)."""
        _ = self.book
        self._book = self._file.current()
        return self._book

    def entry_with_address(self, org_number: str, address: str) -> OrganisationEntry | None:
        """`org_number`'s entry if `address` is one of its functional addresses, looking again in
        the book on disk before saying no (another process may have listed a unit since)."""
        entry = self.book.get(org_number)
        if entry is not None and address in entry.addresses:
            return entry
        entry = self.fresh_book().get(org_number)
        return entry if entry is not None and address in entry.addresses else None

    @property
    def signer(self) -> KeyStore:
        """The marketplace's own keys: it signs match notices and its refusals, nothing else."""
        if self._own is None:
            _ = self.book
            self._own = open_key_store(self.directory, MARKETPLACE_ORG)
        return self._own

    def reload(self) -> AddressBook:
        """Re-read the address book (another organisation rotated its keys, a unit was added)."""
        self._book = ensure_keys(self.directory)
        self._file.adopt(self._book)
        return self._book

    def region(self, code: str) -> OrganisationEntry | None:
        return self.book.by_code(code)

    def unit(self, hsa_id: str, region_code: str) -> OrganisationEntry:
        """The organisation of a unit, listing the unit in the address book if it is new."""
        book = self.book
        updated = with_unit(book, hsa_id, region_code=region_code)
        if updated is not book:
            with _directory_lock(self.directory):
                # Re-read first so a unit added by another process (or a rotated key) is not lost.
                current = load_directory(self.directory)
                updated = with_unit(current, hsa_id, region_code=region_code)
                if updated is not current:
                    save_address_book(updated, address_book_path(self.directory))
                self._file.adopt(updated)
            self._book = updated
            log.info("federation.unit_listed", unit=hsa_id, region=region_code)
        entry = updated.by_address(hsa_id)
        assert entry is not None
        return entry
