"""An organisation's own key store: its private keys, in a directory only it can read.

Layout of one store (a directory per organisation)::

    <store>/keys.json          index: the organisation and its keys' public parts and times (0600)
    <store>/<key id>.pem       one private key, PKCS#8 PEM (0600)

The private keys never leave the store: callers get `sign_compact` (a JWS) and `decrypt_compact`
(a JWE's plaintext), not keys.
On rotation the new pair becomes current; the old decryption key stays so older messages still
decrypt, and the old signing key is deleted because nothing may be signed with it any more (its
public half stays in the address book for verifying older messages).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from joserfc import jwe, jws
from joserfc.jwk import OKPKey
from pydantic import TypeAdapter

from notifiers import crypto
from notifiers.address_book import PublicKey

INDEX_FILE = "keys.json"
_PUBLIC_KEYS = TypeAdapter(tuple[PublicKey, ...])


class KeyStoreError(Exception):
    """The store is missing, unreadable, too open, or lacks a key."""


class SigningKeys(Protocol):
    """What a sender needs: its organisation and a way to sign with its current key."""

    @property
    def organisation(self) -> str: ...

    @property
    def signing_key_id(self) -> str: ...

    def sign_compact(self, protected: dict[str, Any], payload: bytes) -> str:
        """A JWS in compact serialization over `payload`, signed with the current signing key;
        `protected` gets the algorithm and the key's kid."""
        ...


class DecryptionKeys(Protocol):
    """What a recipient needs: its organisation and a way to decrypt JWEs sent to it."""

    @property
    def organisation(self) -> str: ...

    def decrypt_compact(self, key_id: str, token: str) -> bytes:
        """The plaintext of a compact JWE encrypted to this organisation's key `key_id`.
        Raises CryptoError, saying nothing about why."""
        ...


class OrganisationKeys(SigningKeys, DecryptionKeys, Protocol):
    """Both halves: a receiver decrypts messages and signs its receipts."""


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the first byte (never chmod'ed after a world-readable moment); O_EXCL so an
    # existing file, or a planted symlink, is never written through.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _write_private(tmp, data)
    os.replace(tmp, path)


def _check_private_mode(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); expected 0600")


class KeyStore:
    """One organisation's private keys. Loaded keys are cached in memory for speed."""

    def __init__(self, path: Path) -> None:
        self._path = path
        index = path / INDEX_FILE
        if not index.is_file():
            raise KeyStoreError(f"no key store at {path}")
        _check_private_mode(index)
        raw = json.loads(index.read_bytes())
        self._organisation: str = raw["organisation"]
        self._keys: tuple[PublicKey, ...] = _PUBLIC_KEYS.validate_python(raw["keys"])
        self._loaded: dict[str, OKPKey] = {}
        self._signing: tuple[str, OKPKey] | None = None

    @classmethod
    def create(cls, path: Path, organisation: str, *, now: datetime | None = None) -> KeyStore:
        """Make a new store with a first signing and encryption key pair."""
        if (path / INDEX_FILE).exists():
            raise KeyStoreError(f"a key store already exists at {path}")
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o700)
        created = now or datetime.now(UTC)
        keys = (_new_key(path, "signing", created), _new_key(path, "encryption", created))
        _write_index(path, organisation, keys)
        return cls(path)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def organisation(self) -> str:
        return self._organisation

    def public_keys(self) -> tuple[PublicKey, ...]:
        """The public parts of every key this store has had, for the address book."""
        return self._keys

    @property
    def signing_key_id(self) -> str:
        return self._current("signing").key_id

    @property
    def encryption_key_id(self) -> str:
        return self._current("encryption").key_id

    def sign_compact(self, protected: dict[str, Any], payload: bytes) -> str:
        if self._signing is None:
            # Found and checked once, not per signature (a notifier signs every notice, an agent
            # every receipt); `rotate` forgets it.
            key_id = self.signing_key_id
            key = self._private(key_id)
            if key.curve_name != crypto.CURVES["signing"]:
                raise KeyStoreError(f"{key_id} is not an Ed25519 key")
            self._signing = key_id, key
        key_id, key = self._signing
        header = {**protected, "alg": crypto.SIGNATURE_ALGORITHM, "kid": key_id}
        return jws.serialize_compact(header, payload, key, registry=crypto.JWS_REGISTRY)

    def decrypt_compact(self, key_id: str, token: str) -> bytes:
        """Decrypt with the named encryption key, current or retired. Raises CryptoError."""
        if not any(k.key_id == key_id and k.use == "encryption" for k in self._keys):
            raise crypto.CryptoError("no such decryption key")
        key = self._private(key_id)
        if key.curve_name != crypto.CURVES["encryption"]:
            raise crypto.CryptoError("not a decryption key")
        try:
            return jwe.decrypt_compact(token, key, registry=crypto.JWE_REGISTRY).plaintext or b""
        except (*crypto.JoseFailure, KeyError, TypeError) as exc:
            # Everything in the token is the sender's: whatever it makes joserfc trip over is theirs.
            raise crypto.CryptoError("decryption failed") from exc

    def rotate(self, *, now: datetime | None = None) -> tuple[PublicKey, ...]:
        """Make a new current key pair; return every public key with the old ones marked retired."""
        moment = now or datetime.now(UTC)
        old_signing = self.signing_key_id
        retired = tuple(k if k.retired else k.model_copy(update={"retired_at": moment}) for k in self._keys)
        fresh = (_new_key(self._path, "signing", moment), _new_key(self._path, "encryption", moment))
        # The index is switched atomically only after the new PEMs exist, so a crash half way leaves
        # the old keys current and at worst an unreferenced new file.
        _write_index(self._path, self._organisation, (*retired, *fresh))
        self._keys = (*retired, *fresh)
        self._signing = None
        self._loaded.pop(old_signing, None)
        (self._path / f"{old_signing}.pem").unlink(missing_ok=True)
        return self._keys

    def _current(self, use: crypto.KeyUse) -> PublicKey:
        for k in self._keys:
            if k.use == use and not k.retired:
                return k
        raise KeyStoreError(f"{self._organisation} has no current {use} key")

    def _private(self, key_id: str) -> OKPKey:
        key = self._loaded.get(key_id)
        if key is None:
            pem = self._path / f"{key_id}.pem"
            if not pem.is_file():
                raise KeyStoreError(f"private key {key_id} is not in the store")
            _check_private_mode(pem)
            key = crypto.load_private_key_pem(pem.read_bytes())
            self._loaded[key_id] = key
        return key


def _new_key(path: Path, use: crypto.KeyUse, created: datetime) -> PublicKey:
    private = crypto.new_key(use)
    public = crypto.public_bytes(private)
    entry = PublicKey(
        key_id=crypto.key_id(use, public),
        use=use,
        algorithm=crypto.CURVES[use],
        public_key=public,
        created_at=created,
    )
    _write_private(path / f"{entry.key_id}.pem", crypto.private_key_pem(private))
    return entry


def _write_index(path: Path, organisation: str, keys: Iterable[PublicKey]) -> None:
    body = {"organisation": organisation, "keys": [k.model_dump(mode="json") for k in keys]}
    _replace_private(path / INDEX_FILE, json.dumps(body, indent=2).encode("utf-8") + b"\n")
