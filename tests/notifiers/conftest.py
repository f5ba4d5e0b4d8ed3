"""Keys for all 21 regions, made once per module (X25519/Ed25519 keys take microseconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from matchers.reference import regions
from notifiers import crypto
from notifiers.address_book import AddressBook, Organisation
from notifiers.envelope import JWE_TYPE, JWS_TYPE, SealedMessage, compose
from notifiers.identifiers import functional_address
from notifiers.keystore import KeyStore
from notifiers.message_types import MatchNotice
from notifiers.provisioning import init_demo_keys, open_key_store

STOCKHOLM = "232100-0016"
UPPSALA = "232100-0024"
GOTLAND = "212000-0803"


def region_organisations() -> list[Organisation]:
    return [Organisation(org_number=r.org_number, name=r.name, code=r.code,
                         addresses=(functional_address(r.org_number),))
            for r in regions().values()]


class Federation:
    """A key directory with every region's store and the shared address book."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.book: AddressBook = init_demo_keys(directory, region_organisations())
        self._stores: dict[str, KeyStore] = {}

    def store(self, org_number: str) -> KeyStore:
        if org_number not in self._stores:
            self._stores[org_number] = open_key_store(self.directory, org_number)
        return self._stores[org_number]

    def notice(self, sender: str = STOCKHOLM, recipient: str = UPPSALA, **kwargs: Any) -> SealedMessage:
        body = MatchNotice(match_id="M-1", case_ref="CASE-1", offer_id="O-1", request_id="R-1")
        entry = self.book.get(recipient)
        assert entry is not None
        return compose(body, sender=self.store(sender), recipient=entry, **kwargs)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return Federation(tmp_path_factory.mktemp("keys"))


def jwe_token(raw: bytes) -> str:
    """The JWE a message carries (the JWS payload), read without verifying anything."""
    return crypto.b64url_decode_strict(raw.split(b".")[1].decode()).decode()


def jwe_header(raw: bytes) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(crypto.b64url_decode_strict(jwe_token(raw).split(".")[0]))
    return header


def with_jwe_header(raw: bytes, **changes: Any) -> str:
    """The message's JWE with its protected header changed (the rest as it was), e.g. the routing
    header under `nvf`: what someone rewriting a header in transit could make."""
    parts = jwe_token(raw).split(".")
    header = {**jwe_header(raw), **changes}
    parts[0] = crypto.b64url(json.dumps(header).encode())
    return ".".join(parts)


def with_routing(raw: bytes, **changes: Any) -> str:
    return with_jwe_header(raw, nvf={**jwe_header(raw)["nvf"], **changes})


def resign(token: str, signer: KeyStore) -> bytes:
    """Sign a (tampered) JWE as `signer` would: what a sender holding the key could send."""
    return signer.sign_compact({"typ": JWS_TYPE, "cty": JWE_TYPE}, token.encode()).encode()
