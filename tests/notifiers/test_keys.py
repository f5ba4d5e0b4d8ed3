"""Key stores, the address book, and rotation."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from notifiers import crypto
from notifiers.address_book import AddressBook, Organisation, PublicKey, load_address_book
from notifiers.envelope import compose
from notifiers.keystore import KeyStore, KeyStoreError
from notifiers.message_types import MatchNotice
from notifiers.provisioning import (
    address_book_path,
    init_demo_keys,
    key_store_path,
    open_key_store,
    rotate_keys,
)
from notifiers.receipts import ReceiptDetail, ReceiptStatus
from notifiers.receiving import InMemorySeenMessages, receive
from tests.notifiers.conftest import STOCKHOLM, UPPSALA, Federation, jwe_header, region_organisations

T0 = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_every_region_has_a_store_of_0600_files(federation: Federation) -> None:
    assert len(federation.book.organisations) == 21
    for org in federation.book.organisations:
        path = key_store_path(federation.directory, org)
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        files = list(path.iterdir())
        assert {f.suffix for f in files} == {".pem", ".json"}
        assert len([f for f in files if f.suffix == ".pem"]) == 2
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_the_address_book_holds_no_private_key(federation: Federation) -> None:
    text = address_book_path(federation.directory).read_text()
    assert "PRIVATE" not in text
    book = load_address_book(address_book_path(federation.directory))
    assert book == federation.book
    for org, entry in book.organisations.items():
        for pem in key_store_path(federation.directory, org).glob("*.pem"):
            private = crypto.load_private_key_pem(pem.read_bytes())
            raw_private = private.private_key.private_bytes_raw()  # type: ignore[union-attr]
            assert crypto.b64encode(raw_private) not in text
            assert crypto.b64url(raw_private) not in text
            assert raw_private.hex() not in text
            # ...while the public half of each private key is listed, under its fingerprint id.
            assert any(k.public_key == crypto.public_bytes(private) for k in entry.keys)


def test_a_key_id_cannot_name_another_key(federation: Federation) -> None:
    key = federation.book.organisations[STOCKHOLM].current_key("signing")
    other = federation.book.organisations[UPPSALA].current_key("signing")
    with pytest.raises(ValueError, match="fingerprint"):
        PublicKey.model_validate({**key.model_dump(), "public_key": other.public_key})


def test_public_keys_are_published_as_okp_jwks(federation: Federation) -> None:
    # RFC 8037 OKP keys with the kid the messages name: what a region's JOSE library imports.
    jwks = federation.book.jwks(STOCKHOLM)
    by_use = {k["use"]: k for k in jwks["keys"]}
    store = federation.store(STOCKHOLM)
    assert by_use["sig"] == {"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "Ed25519",
                             "kid": store.signing_key_id, "x": by_use["sig"]["x"]}
    assert by_use["enc"] == {"kty": "OKP", "crv": "X25519", "use": "enc", "alg": "ECDH-ES+A256KW",
                             "kid": store.encryption_key_id, "x": by_use["enc"]["x"]}
    for jwk in jwks["keys"]:
        entry = federation.book.organisations[STOCKHOLM].key(jwk["kid"], "signing" if jwk["use"] == "sig"
                                                             else "encryption")
        assert entry is not None and crypto.b64url_decode_strict(jwk["x"]) == entry.public_key


def test_a_store_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = KeyStore.create(tmp_path / "s", STOCKHOLM)
    pem = tmp_path / "s" / f"{store.signing_key_id}.pem"
    os.chmod(pem, 0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        KeyStore(tmp_path / "s").sign_compact({}, b"x")


def test_a_store_is_not_created_twice(tmp_path: Path) -> None:
    KeyStore.create(tmp_path / "s", STOCKHOLM)
    with pytest.raises(KeyStoreError, match="already exists"):
        KeyStore.create(tmp_path / "s", STOCKHOLM)


def test_init_is_idempotent(tmp_path: Path) -> None:
    orgs = region_organisations()[:3]
    first = init_demo_keys(tmp_path, orgs, now=T0)
    second = init_demo_keys(tmp_path, orgs, now=T0 + timedelta(days=1))
    assert first == second


def test_an_organisation_can_get_more_addresses(federation: Federation) -> None:
    book = federation.book.with_address(UPPSALA, "SE2321000024-OGON1")
    assert book.by_address("SE2321000024-OGON1") == book.organisations[UPPSALA]
    with pytest.raises(ValueError, match="two organisations"):
        book.with_address(STOCKHOLM, "SE2321000024-OGON1")


def test_organisation_numbers_are_checked() -> None:
    for bad in ("232100-0017", "19121212-1212", "121212-1212", "2321000016"):
        with pytest.raises(ValueError):
            Organisation(org_number=bad, name="x", addresses=("SE2321000016-A",))


def _notice(sender: KeyStore, book: AddressBook, created_at: datetime | None = None) -> bytes:
    body = MatchNotice(match_id="M-1", case_ref="C-1", offer_id="O-1", request_id="R-1")
    sealed = compose(body, sender=sender, recipient=book.organisations[UPPSALA], created_at=created_at)
    return sealed.to_bytes()


def test_rotation_keeps_older_messages_verifiable_and_decryptable(tmp_path: Path) -> None:
    orgs = [o for o in region_organisations() if o.org_number in (STOCKHOLM, UPPSALA)]
    book = init_demo_keys(tmp_path, orgs, now=T0)
    old_message = _notice(open_key_store(tmp_path, STOCKHOLM), book, created_at=T0 + timedelta(hours=1))
    old_sender_key = book.organisations[STOCKHOLM].current_key("signing")
    old_recipient_key = book.organisations[UPPSALA].current_key("encryption")

    rotated_at = T0 + timedelta(days=30)
    rotate_keys(tmp_path, STOCKHOLM, now=rotated_at)
    book = rotate_keys(tmp_path, UPPSALA, now=rotated_at)

    # The old public keys stay listed, marked retired; there is one new current key per use.
    stockholm = book.organisations[STOCKHOLM]
    assert stockholm.key(old_sender_key.key_id, "signing") == old_sender_key.model_copy(
        update={"retired_at": rotated_at})
    assert stockholm.current_key("signing").key_id != old_sender_key.key_id
    assert len(stockholm.keys) == 4
    # The retired signing key's private half is gone; the retired decryption key's is kept.
    assert not (key_store_path(tmp_path, STOCKHOLM) / f"{old_sender_key.key_id}.pem").exists()
    assert (key_store_path(tmp_path, UPPSALA) / f"{old_recipient_key.key_id}.pem").exists()

    seen = InMemorySeenMessages()
    recipient = open_key_store(tmp_path, UPPSALA)
    signed, opened = receive(old_message, recipient, book, seen)
    assert signed.receipt.status is ReceiptStatus.ACCEPTED and opened is not None
    assert opened.header.recipient_key_id == old_recipient_key.key_id

    new_message = _notice(open_key_store(tmp_path, STOCKHOLM), book)
    assert jwe_header(new_message)["nvf"]["recipient_key_id"] == recipient.encryption_key_id
    assert jwe_header(new_message)["kid"] == recipient.encryption_key_id
    signed, opened = receive(new_message, recipient, book, seen)
    assert signed.receipt.status is ReceiptStatus.ACCEPTED and opened is not None


def test_a_retired_signing_key_cannot_sign_new_messages(tmp_path: Path) -> None:
    orgs = [o for o in region_organisations() if o.org_number in (STOCKHOLM, UPPSALA)]
    book = init_demo_keys(tmp_path, orgs, now=T0)
    stale = open_key_store(tmp_path, STOCKHOLM)
    stale.sign_compact({}, b"warm the cache")  # a process that loaded the key before the rotation
    book = rotate_keys(tmp_path, STOCKHOLM, now=T0 + timedelta(days=30))
    in_flight = _notice(stale, book, created_at=T0 + timedelta(days=29))  # composed before rotation
    after = _notice(stale, book, created_at=T0 + timedelta(days=31))
    recipient = open_key_store(tmp_path, UPPSALA)
    accepted, _ = receive(in_flight, recipient, book, InMemorySeenMessages())
    refused, _ = receive(after, recipient, book, InMemorySeenMessages())
    assert accepted.receipt.status is ReceiptStatus.ACCEPTED
    assert refused.receipt.detail is ReceiptDetail.SECURITY


def test_rotating_an_unknown_organisation_is_refused(tmp_path: Path) -> None:
    init_demo_keys(tmp_path, region_organisations()[:1], now=T0)
    with pytest.raises(LookupError):
        rotate_keys(tmp_path, UPPSALA)
