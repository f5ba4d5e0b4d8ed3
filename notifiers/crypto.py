"""The JOSE suite every secure message and receipt uses, pinned, and the keys as JWKs.

Nothing here is cryptography of our own: signing, key agreement and encryption are `joserfc`
(which uses `cryptography`), canonical JSON is RFC 8785 (`rfc8785`). This module only chooses:

- signatures: JWS, alg `Ed25519` (RFC 9864's fully specified name for EdDSA over Ed25519;
  `EdDSA` with an Ed25519 key, RFC 8037, is accepted too since it is the same algorithm).
- encryption: JWE, alg `ECDH-ES+A256KW` with an X25519 key (RFC 8037), enc `A256GCM`.
- keys: OKP JWKs (RFC 8037). A key id is derived from the raw public key,
  ``"sig-" | "enc-"`` + the first 20 hex digits of SHA-256(raw 32-byte public key), so an id can
  never name two different keys.

Only these algorithms are in the registries, so nothing can be negotiated down.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import warnings
from typing import Any, Final, Literal

import rfc8785
from joserfc.errors import JoseError
from joserfc.jwe import JWERegistry
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry
from joserfc.registry import HeaderParameter
from joserfc.util import urlsafe_b64encode

KeyUse = Literal["signing", "encryption"]

SIGNATURE_ALGORITHM: Final = "Ed25519"
ACCEPTED_SIGNATURE_ALGORITHMS: Final = ("Ed25519", "EdDSA")
KEY_MANAGEMENT_ALGORITHM: Final = "ECDH-ES+A256KW"
CONTENT_ALGORITHM: Final = "A256GCM"
CURVES: Final[dict[KeyUse, str]] = {"signing": "Ed25519", "encryption": "X25519"}
JWK_USE: Final[dict[KeyUse, str]] = {"signing": "sig", "encryption": "enc"}
JWK_ALG: Final[dict[KeyUse, str]] = {"signing": SIGNATURE_ALGORITHM, "encryption": KEY_MANAGEMENT_ALGORITHM}
HEADER_PARAMETER: Final = "nvf"
"""The private JWE header parameter that carries a message's readable routing header."""

# joserfc flags `EdDSA` as deprecated by RFC 9864; we sign with `Ed25519` and only accept `EdDSA`
# from others, so the warning would say nothing a reader can act on.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", module=r"joserfc\..*")


def _object(value: object) -> None:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")


JWS_REGISTRY: Final = JWSRegistry(algorithms=list(ACCEPTED_SIGNATURE_ALGORITHMS))
JWE_REGISTRY: Final = JWERegistry(
    algorithms=[KEY_MANAGEMENT_ALGORITHM, CONTENT_ALGORITHM],
    header_registry={HEADER_PARAMETER: HeaderParameter("NVF routing header", _object, required=True)},
)


class CryptoError(Exception):
    """Decryption failed. Deliberately says nothing about why."""


JoseFailure = (JoseError, ValueError)
"""What joserfc raises on malformed or failing input (some checks raise plain ValueErrors)."""


# --- canonical forms -----------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that is signed or hashed: RFC 8785 (JCS)."""
    return rfc8785.dumps(value)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode_strict(text: str) -> bytes:
    """Decode standard base64, refusing any text that is not exactly what `b64encode` writes.

    Used for the transport encoding on the bus. Plain decoding ignores the unused low bits of the
    last character, so two different texts give the same bytes; refusing non-canonical text keeps
    "one flipped bit is always noticed" true.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not valid base64") from exc
    if b64encode(data) != text:
        raise ValueError("not canonical base64")
    return data


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode("ascii")


def b64url_decode_strict(text: str) -> bytes:
    """Decode unpadded base64url (RFC 7515 §2), refusing any text `b64url` would not write."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64url") from exc
    if b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


# --- keys ----------------------------------------------------------------------------------------


def new_key(use: KeyUse) -> OKPKey:
    return OKPKey.generate_key(CURVES[use])  # type: ignore[arg-type]


def public_bytes(key: OKPKey) -> bytes:
    x = key.as_dict(private=False)["x"]
    if not isinstance(x, str):
        raise ValueError("an OKP key's x is a string")
    return b64url_decode_strict(x)


def key_id(use: KeyUse, public_key: bytes) -> str:
    """A key id derived from the public key, so an id can never name two different keys."""
    prefix = "sig" if use == "signing" else "enc"
    return f"{prefix}-{hashlib.sha256(public_key).hexdigest()[:20]}"


def public_jwk(use: KeyUse, public_key: bytes, kid: str) -> dict[str, Any]:
    """The published form of a public key: an RFC 8037 OKP JWK with its kid, use and alg."""
    return {"kty": "OKP", "crv": CURVES[use], "x": b64url(public_key), "kid": kid,
            "use": JWK_USE[use], "alg": JWK_ALG[use]}


@functools.lru_cache(maxsize=1024)
def public_okp_key(use: KeyUse, public_key: bytes) -> OKPKey:
    """The public key as a joserfc key (cached: verifying many messages from one sender)."""
    jwk = public_jwk(use, public_key, key_id(use, public_key))
    # `alg` is left out: a key listed for Ed25519 also verifies the `EdDSA` name of the algorithm.
    return OKPKey.import_key({k: v for k, v in jwk.items() if k != "alg"})


def check_public_key(use: KeyUse, public_key: bytes) -> None:
    """Raise ValueError unless `public_key` is a raw public key of the curve of `use`."""
    if len(public_key) != 32:
        raise ValueError(f"a {CURVES[use]} public key is 32 bytes")
    try:
        public_okp_key(use, public_key)
    except JoseFailure as exc:
        raise ValueError(f"not a {CURVES[use]} public key: {exc}") from exc


def private_key_pem(key: OKPKey) -> bytes:
    return key.as_pem(private=True)


def load_private_key_pem(data: bytes) -> OKPKey:
    """A PKCS#8 PEM private key (the key store's format) as a joserfc OKP key."""
    key = OKPKey.import_key(data)
    if not key.is_private or key.curve_name not in CURVES.values():
        raise ValueError("expected an Ed25519 or X25519 private key")
    return key
