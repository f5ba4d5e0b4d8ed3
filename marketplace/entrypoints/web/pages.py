"""The pages' HTML and assets, the login and the logout.

Who sees which page is decided here from the verified token alone: the operator gets the console,
a region's member that region's start page, anyone else the login. The HTML carries no data; the
scripts read it from the API with the caller's own rights.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from marketplace.entrypoints.api.deps import State
from marketplace.entrypoints.api.tokens import Caller, ClaimsRefused, TokenRefused
from marketplace.entrypoints.web.session import (
    clear_cookie_header,
    set_cookie_header,
    token_from_cookie_header,
)
from marketplace.services import api_clients

log = structlog.get_logger(__name__)
router = APIRouter(include_in_schema=False)
STATIC = resources.files("marketplace.entrypoints.web") / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
# The pages run only their own scripts and talk only to their own origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def html(name: str, status: int = 200) -> Response:
    return Response(asset(name), status_code=status, media_type=_TYPES[".html"], headers=SECURITY_HEADERS)


async def session_caller(request: Request, st: State) -> Caller | None:
    """The person behind the session cookie, if its token is valid and its client not revoked."""
    token = token_from_cookie_header(request.headers.get("cookie", ""))
    if token is None:
        return None
    try:
        who = await st.verifier.verify(token)
    except (TokenRefused, ClaimsRefused):
        return None
    if who.embedded:
        async with st.db.session() as session:
            if not await api_clients.is_active(session, who.client_id):
                return None
    return who


@router.get("/")
async def home(request: Request, st: State) -> Response:
    who = await session_caller(request, st)
    if who is None:
        return RedirectResponse("/login", status_code=303, headers={"Cache-Control": "no-store"})
    return html("console.html" if who.is_operator else "region.html")


@router.get("/login")
async def login_page() -> Response:
    return html("login.html")


@router.post("/login")
async def login(request: Request, st: State, client_id: Annotated[str, Form(max_length=64)],
                client_secret: Annotated[str, Form(max_length=256)]) -> Response:
    """A member signs in with the credentials `nvf clients create` printed for them."""
    if st.issuer is None:
        # With an external OpenID Connect issuer, people sign in there; this form has no part.
        return RedirectResponse("/login?error=external", status_code=303)
    if await st.rate.take(f"login:{client_id}") is not None:
        return RedirectResponse("/login?error=rate", status_code=303)
    async with st.db.session() as session:
        client = await api_clients.authenticate(session, client_id, client_secret)
    if client is None:
        log.info("web.login_refused", client_id=client_id)
        return RedirectResponse("/login?error=credentials", status_code=303)
    token = st.issuer.issue(client)
    log.info("web.login", client_id=client.client_id, role=client.role, region=client.region)
    secure = request.url.scheme == "https"
    return RedirectResponse("/", status_code=303, headers={
        "Set-Cookie": set_cookie_header(token, st.issuer.ttl_s, secure=secure), "Cache-Control": "no-store"})


@router.post("/logout")
async def logout(request: Request) -> Response:
    return RedirectResponse("/login", status_code=303, headers={
        "Set-Cookie": clear_cookie_header(secure=request.url.scheme == "https")})


@router.get("/static/{name}")
async def static(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES or not (STATIC / name).is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(asset(name), media_type=_TYPES[suffix],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
