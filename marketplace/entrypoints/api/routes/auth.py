"""The embedded token endpoint (OAuth2 client credentials, RFC 6749 §4.4) and its public keys.

Errors here are OAuth2's own (`{"error": "invalid_client"}`), as token clients expect. The token
endpoint takes no Idempotency-Key: asking twice gives two tokens, which harms nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse

from marketplace.entrypoints.api.deps import State
from marketplace.entrypoints.api.tokens import EMBEDDED_ISSUER
from marketplace.services import api_clients

router = APIRouter(tags=["authentication"])
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {**_NO_STORE, **({"WWW-Authenticate": 'Basic realm="nvf"'} if status == 401 else {})}
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@router.post("/oauth/token", summary="A short-lived token for a client (client credentials grant)",
             responses={400: {"description": "unsupported grant"}, 401: {"description": "invalid client"}})
async def token(request: Request, st: State,
                grant_type: Annotated[str, Form(max_length=64)],
                client_id: Annotated[str | None, Form(max_length=64)] = None,
                client_secret: Annotated[str | None, Form(max_length=256)] = None) -> JSONResponse:
    if st.issuer is None:
        return _oauth_error(400, "unsupported_grant_type",
                            "tokens are issued by the configured OpenID Connect issuer, not here")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(request)
    cid, secret = basic if basic is not None else (client_id, client_secret)
    if not cid or not secret:
        return _oauth_error(401, "invalid_client", "client authentication failed")
    async with st.db.session() as session:
        client = await api_clients.authenticate(session, cid, secret)
    if client is None:
        return _oauth_error(401, "invalid_client", "client authentication failed")
    body: dict[str, Any] = {"access_token": st.issuer.issue(client), "token_type": "Bearer",
                            "expires_in": st.issuer.ttl_s, "scope": client.role}
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/.well-known/jwks.json", summary="The embedded issuer's public signing keys")
async def jwks(st: State) -> JSONResponse:
    return JSONResponse(st.issuer.jwks() if st.issuer is not None else {"keys": []})


@router.get("/.well-known/openid-configuration", summary="Where the embedded issuer's endpoints are")
async def openid_configuration(request: Request, st: State) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    return JSONResponse({"issuer": EMBEDDED_ISSUER if st.issuer else st.settings.oidc_issuer,
                         "token_endpoint": f"{base}/oauth/token", "jwks_uri": f"{base}/.well-known/jwks.json",
                         "grant_types_supported": ["client_credentials"],
                         "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                         "id_token_signing_alg_values_supported": ["EdDSA"]})
