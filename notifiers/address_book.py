"""The address book: every organisation's functional addresses and public keys.

It is the public half of the federation's directory. It holds public keys only (raw 32-byte
Ed25519/X25519 keys whose ids are their fingerprints), each published as an RFC 8037 OKP JWK
(`PublicKey.jwk`, `AddressBook.jwks`) for any JOSE library; private keys live in each
organisation's own key store (`notifiers.keystore`). Retired keys stay listed so older messages
still verify.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from joserfc.jwk import OKPKey
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from notifiers import crypto
from notifiers.identifiers import HsaId, KeyId, OrgNumber


def _from_b64(value: object) -> object:
    return crypto.b64decode_strict(value) if isinstance(value, str) else value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_from_b64),
    PlainSerializer(crypto.b64encode, return_type=str, when_used="json"),
]
"""Bytes carried as canonical base64 text in JSON."""


class PublicKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: KeyId
    use: crypto.KeyUse
    algorithm: Literal["Ed25519", "X25519"]
    public_key: Base64Bytes
    created_at: AwareDatetime
    retired_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PublicKey:
        expected = crypto.CURVES[self.use]
        if self.algorithm != expected:
            raise ValueError(f"{self.use} keys are {expected}")
        crypto.check_public_key(self.use, self.public_key)
        # The id is the fingerprint: a tampered entry cannot keep an id and swap the key.
        if self.key_id != crypto.key_id(self.use, self.public_key):
            raise ValueError("key_id is not the fingerprint of public_key")
        return self

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    @property
    def jwk(self) -> dict[str, Any]:
        """The key as published for other systems: an RFC 8037 OKP JWK with kid, use and alg."""
        return crypto.public_jwk(self.use, self.public_key, self.key_id)

    def okp_key(self) -> OKPKey:
        return crypto.public_okp_key(self.use, self.public_key)

    def valid_for_signature_at(self, moment: datetime) -> bool:
        """A retired signing key still verifies what was written before it was retired."""
        return self.retired_at is None or moment < self.retired_at


class Organisation(BaseModel):
    """An organisation as the lead describes it: who it is and where it receives messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    org_number: OrgNumber
    name: str = Field(min_length=1, max_length=200)
    code: str | None = Field(default=None, pattern=r"^\d{2}$", description="region code, if a region")
    addresses: tuple[HsaId, ...] = Field(min_length=1)


class OrganisationEntry(Organisation):
    keys: tuple[PublicKey, ...] = ()

    @model_validator(mode="after")
    def _one_current_key_per_use(self) -> OrganisationEntry:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("key ids must be unique within an organisation")
        for use in ("signing", "encryption"):
            if sum(1 for k in self.keys if k.use == use and not k.retired) > 1:
                raise ValueError(f"at most one current {use} key")
        return self

    @cached_property
    def keys_by_use_and_id(self) -> dict[tuple[str, str], PublicKey]:
        """The keys by (use, key id): every message and receipt verified looks its signer's key up.
        Cached on the entry, which is frozen (a changed key set is a new entry)."""
        return {(k.use, k.key_id): k for k in self.keys}

    def key(self, key_id: str, use: crypto.KeyUse) -> PublicKey | None:
        return self.keys_by_use_and_id.get((use, key_id))

    def current_key(self, use: crypto.KeyUse) -> PublicKey:
        for k in self.keys:
            if k.use == use and not k.retired:
                return k
        raise LookupError(f"{self.org_number} has no current {use} key")


class AddressBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    organisations: dict[OrgNumber, OrganisationEntry] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AddressBook:
        seen: dict[str, str] = {}
        for org_number, entry in self.organisations.items():
            if entry.org_number != org_number:
                raise ValueError(f"entry under {org_number} is for {entry.org_number}")
            for address in entry.addresses:
                # One functional address, one owner: otherwise a message could be routed to two.
                if seen.setdefault(address, org_number) != org_number:
                    raise ValueError(f"address {address} listed for two organisations")
        return self

    def get(self, org_number: str) -> OrganisationEntry | None:
        return self.organisations.get(org_number)

    @cached_property
    def _by_address(self) -> dict[str, OrganisationEntry]:
        # Built once per book (frozen; every change makes a new one): each notice looks its
        # recipients up by address and region code.
        return {address: e for e in self.organisations.values() for address in e.addresses}

    @cached_property
    def _by_code(self) -> dict[str, OrganisationEntry]:
        codes: dict[str, OrganisationEntry] = {}
        for e in self.organisations.values():
            if e.code is not None:
                codes.setdefault(e.code, e)  # the first listed, as a scan would find it
        return codes

    def by_address(self, hsa_id: str) -> OrganisationEntry | None:
        return self._by_address.get(hsa_id)

    def by_code(self, code: str) -> OrganisationEntry | None:
        return self._by_code.get(code)

    def resolve(self, org: str) -> OrganisationEntry | None:
        """An organisation by org number, region code or functional address."""
        return self.get(org) or self.by_code(org) or self.by_address(org)

    def jwks(self, org_number: str) -> dict[str, Any]:
        """An organisation's public keys, current and retired, as an RFC 7517 JWK Set."""
        return {"keys": [k.jwk for k in self._entry(org_number).keys]}

    def signing_key(self, org_number: str, key_id: str) -> PublicKey | None:
        entry = self.get(org_number)
        return entry.key(key_id, "signing") if entry else None

    def with_organisation(self, organisation: Organisation) -> AddressBook:
        """Add an organisation or update its name, code and addresses, keeping its keys."""
        old = self.get(organisation.org_number)
        entry = OrganisationEntry(**organisation.model_dump(), keys=old.keys if old else ())
        return AddressBook(organisations={**self.organisations, organisation.org_number: entry})

    def with_address(self, org_number: str, hsa_id: str) -> AddressBook:
        entry = self._entry(org_number)
        if hsa_id in entry.addresses:
            return self
        return self._replace(entry.model_copy(update={"addresses": (*entry.addresses, hsa_id)}))

    def with_keys(self, org_number: str, keys: Iterable[PublicKey]) -> AddressBook:
        """Insert keys, or update listed ones by key id (used to mark them retired)."""
        entry = self._entry(org_number)
        merged = {k.key_id: k for k in entry.keys}
        for k in keys:
            old = merged.get(k.key_id)
            if old is not None and old.public_key != k.public_key:
                raise ValueError(f"key {k.key_id} already listed with another public key")
            merged[k.key_id] = k
        # Built anew rather than model_copy'd so the one-current-key rule is checked again.
        return self._replace(OrganisationEntry(**entry.model_dump(exclude={"keys"}),
                                               keys=tuple(merged.values())))

    def _entry(self, org_number: str) -> OrganisationEntry:
        entry = self.get(org_number)
        if entry is None:
            raise LookupError(f"{org_number} is not in the address book")
        return entry

    def _replace(self, entry: OrganisationEntry) -> AddressBook:
        return AddressBook(organisations={**self.organisations, entry.org_number: entry})


def load_address_book(path: Path) -> AddressBook:
    return AddressBook.model_validate_json(path.read_bytes())


JWKS_DIRECTORY = "jwks"


def jwks_path(address_book: Path, org_number: str) -> Path:
    """Where an organisation's JWK Set is published, beside the address book."""
    return address_book.parent / JWKS_DIRECTORY / f"{org_number}.json"


def save_address_book(book: AddressBook, path: Path) -> None:
    """Write atomically, so a reader never sees half an address book; and publish each
    organisation's keys as a JWK Set (`jwks/<org number>.json`) for other systems' JOSE libraries."""
    _write_atomically(path, book.model_dump_json(indent=2) + "\n")
    for org_number in book.organisations:
        _write_atomically(jwks_path(path, org_number), json.dumps(book.jwks(org_number), indent=2) + "\n")


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
