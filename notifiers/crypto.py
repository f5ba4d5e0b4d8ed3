"""The primitives every secure message is made of, composed and nothing more.

Suite (fixed, so nothing can be negotiated down):

- content: AES-256-GCM with a fresh random key per message; the readable header is the
  associated data, so a header cannot be moved onto another body.
- key transport: ECIES-style. A fresh ephemeral X25519 key per message, ECDH with the recipient
  organisation's X25519 key, HKDF-SHA256 (info binds both public keys) gives a key-encryption key,
  and the content key is wrapped with AES key wrap (RFC 3394). X25519 rather than RSA-OAEP 3072:
  keys are 32 bytes, generating 21 organisations' keys takes milliseconds, and the ephemeral key
  gives each message its own key-encryption key.
- signature: Ed25519 over a domain-separated canonical JSON of everything but the signature.

All of it is `cryptography`; this module only chooses and composes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

KeyUse = Literal["signing", "encryption"]
PrivateKey = Ed25519PrivateKey | X25519PrivateKey

SIGNATURE_ALGORITHM: Final = "Ed25519"
KEY_AGREEMENT_ALGORITHM: Final = "X25519"
KEY_WRAP_ALGORITHM: Final = "X25519-HKDF-SHA256-A256KW"
CONTENT_ALGORITHM: Final = "A256GCM"
NONCE_BYTES: Final = 12
_HKDF_INFO = b"nvf-sdk/1 key-wrap"


class CryptoError(Exception):
    """Decryption or key unwrapping failed. Deliberately says nothing about why."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A content key wrapped for one recipient key."""

    ephemeral_public_key: bytes
    wrapped_key: bytes


# --- canonical forms --------------------------------------------------------------------------


def canonical_json(value: object) -> bytes:
    """The one byte form of a JSON value that is signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Decode standard base64, refusing any text that is not exactly what `b64encode` writes.

    Plain decoding ignores the unused low bits of the last character, so two different texts give
    the same bytes; refusing non-canonical text keeps "one flipped bit is always noticed" true.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not valid base64") from exc
    if b64encode(data) != text:
        raise ValueError("not canonical base64")
    return data


# --- keys ----------------------------------------------------------------------------------------


def new_signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def new_encryption_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_bytes(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(use: KeyUse, public_key: bytes) -> str:
    """A key id derived from the public key, so an id can never name two different keys."""
    prefix = "sig" if use == "signing" else "enc"
    return f"{prefix}-{hashlib.sha256(public_key).hexdigest()[:20]}"


def check_public_key(use: KeyUse, public_key: bytes) -> None:
    """Raise ValueError unless `public_key` is a raw public key of the algorithm of `use`."""
    if use == "signing":
        Ed25519PublicKey.from_public_bytes(public_key)
    else:
        X25519PublicKey.from_public_bytes(public_key)


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key_pem(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        raise ValueError(f"unexpected private key type {type(key).__name__}")
    return key


# --- signatures ----------------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- content encryption --------------------------------------------------------------------------


def new_content_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def encrypt(content_key: bytes, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Return (nonce, ciphertext with tag). A random nonce is safe: each key is used once."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(content_key).encrypt(nonce, plaintext, associated_data)


def decrypt(content_key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    try:
        return AESGCM(content_key).decrypt(nonce, ciphertext, associated_data)
    except (InvalidTag, ValueError) as exc:
        raise CryptoError("decryption failed") from exc


# --- key transport -------------------------------------------------------------------------------


def _key_encryption_key(shared_secret: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    # Both public keys go into the info so the derived key is bound to this exact pair.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_HKDF_INFO + ephemeral_public + recipient_public).derive(shared_secret)


def wrap_content_key(recipient_public: bytes, content_key: bytes) -> WrappedKey:
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    kek = _key_encryption_key(shared, ephemeral_public, recipient_public)
    return WrappedKey(ephemeral_public, aes_key_wrap(kek, content_key))


def unwrap_content_key(key: X25519PrivateKey, wrapped: WrappedKey) -> bytes:
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(wrapped.ephemeral_public_key))
        kek = _key_encryption_key(shared, wrapped.ephemeral_public_key, public_bytes(key))
        return aes_key_unwrap(kek, wrapped.wrapped_key)
    except (InvalidUnwrap, ValueError) as exc:
        # ValueError covers malformed or low-order ephemeral keys (all-zero shared secret).
        raise CryptoError("the content key could not be unwrapped") from exc
