"""Who is calling: short-lived signed tokens whose claims carry the organisation and the role.

The embedded issuer signs with an Ed25519 key kept in the state directory (EdDSA JWS, PyJWT) and
publishes its public key as a JWKS. Configured with an external OpenID Connect issuer
(`NVF_OIDC_ISSUER`, `NVF_OIDC_JWKS_URL`), the API accepts that issuer's tokens instead, as a
national identity provider would issue them, with the same claims:

| claim | meaning |
|---|---|
| `role` | `region` or `operator` |
| `region_code` | the region (two digits), for `role=region` |
| `org_number` | the organisation number (`232100-0016`), must be the region's |
| `hsa_id` | the organisation's HSA-id (`SE2321000016-...`), must be under that organisation number |
| `client_id` (or `azp`, or `sub`) | the calling system, for idempotency keys, rate limits and the audit |

Identity comes from these claims only, never from a header or a body the caller fills in.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from events.parties import OPERATOR
from marketplace.adapters.api_orm import ApiClientRow
from marketplace.services.api_clients import check_organisation

EMBEDDED_ISSUER = "urn:nvf:marketplace"
AUDIENCE = "nvf-region-api"
_LEEWAY_S = 10


class TokenRefused(Exception):
    """The token is missing, unreadable, expired, or not signed by the issuer we trust (401)."""


class ClaimsRefused(Exception):
    """A valid token whose claims name no organisation this marketplace serves (403)."""


@dataclass(frozen=True)
class Caller:
    client_id: str
    role: Literal["region", "operator"]
    region: str | None
    org_number: str | None
    hsa_id: str | None
    embedded: bool = True

    @property
    def party(self) -> str:
        """Whose channel on the bus this caller speaks through."""
        return self.region if self.role == "region" and self.region else OPERATOR

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def caller_from_claims(claims: dict[str, Any], *, embedded: bool) -> Caller:
    role = claims.get("role")
    region = claims.get("region_code")
    org = claims.get("org_number")
    hsa = claims.get("hsa_id")
    client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
    if not isinstance(client_id, str) or not client_id or len(client_id) > 255:
        raise ClaimsRefused("the token names no client (client_id, azp or sub)")
    for name, value in (("role", role), ("region_code", region), ("org_number", org), ("hsa_id", hsa)):
        if value is not None and not isinstance(value, str):
            raise ClaimsRefused(f"claim {name} must be a string")
    try:
        check_organisation(str(role), region, org, hsa)
    except ValueError as exc:
        raise ClaimsRefused(str(exc)) from None
    return Caller(client_id=client_id, role=role, region=region if role == "region" else None,  # type: ignore[arg-type]
                  org_number=org, hsa_id=hsa, embedded=embedded)


class Verifier(Protocol):
    async def verify(self, token: str) -> Caller: ...


class EmbeddedIssuer:
    """The marketplace's own token issuer: an Ed25519 key in `<state dir>/api/token-signing-key.pem`."""

    def __init__(self, state_dir: Path, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._key = _load_or_create_key(state_dir / "api" / "token-signing-key.pem")
        public = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(public).digest()[:12]).decode().rstrip("=")

    def issue(self, client: ApiClientRow, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"iss": EMBEDDED_ISSUER, "aud": AUDIENCE, "sub": client.client_id, "client_id": client.client_id,
                  "iat": issued, "nbf": issued, "exp": issued + self.ttl_s, "role": client.role,
                  "region_code": client.region, "org_number": client.org_number, "hsa_id": client.hsa_id,
                  "jti": base64.urlsafe_b64encode(os.urandom(12)).decode()}
        return jwt.encode({k: v for k, v in claims.items() if v is not None}, self._key, algorithm="EdDSA",
                          headers={"kid": self.kid})

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(OKPAlgorithm.to_jwk(self._key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}

    async def verify(self, token: str) -> Caller:
        try:
            claims = jwt.decode(token, self._key.public_key(), algorithms=["EdDSA"], audience=AUDIENCE,
                                issuer=EMBEDDED_ISSUER, leeway=_LEEWAY_S,
                                options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"token refused: {exc}") from None
        return caller_from_claims(claims, embedded=True)


class ExternalIssuer:
    """An OpenID Connect issuer's tokens, checked against its JWKS (fetched and cached by PyJWT)."""

    ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")

    def __init__(self, issuer: str, jwks_url: str, audience: str | None) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=10)

    async def verify(self, token: str) -> Caller:
        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(token, key.key, algorithms=list(self.ALGORITHMS), issuer=self.issuer,
                                audience=self.audience, leeway=_LEEWAY_S,
                                options={"require": ["exp", "iss"], "verify_aud": self.audience is not None})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"token refused: {exc}") from None
        return caller_from_claims(claims, embedded=False)


def _load_or_create_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    return key
