"""Keys for all 21 regions, made once per module (X25519/Ed25519 keys take microseconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from matchers.reference import regions
from notifiers import crypto
from notifiers.address_book import AddressBook, Organisation
from notifiers.envelope import MESSAGE_SIGNING_CONTEXT, SealedMessage, compose
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


def resign(data: dict[str, Any], signer: KeyStore) -> bytes:
    """Re-sign a (tampered) message as `signer` would: what a sender holding the key could send."""
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    signature = signer.sign(MESSAGE_SIGNING_CONTEXT + crypto.canonical_json(unsigned))
    return crypto.canonical_json({**unsigned, "signature": crypto.b64encode(signature)})
