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

from marketplace.adapters.api_orm import ApiClientRow
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
    # Same-origin requests keep their Origin (checked on the login); other sites learn nothing.
    "Referrer-Policy": "same-origin",
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


def same_origin(request: Request) -> bool:
    """A browser names the page a form was sent from; a form from another site is refused (login
    CSRF: being signed in as someone else)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


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
    if not same_origin(request):
        return Response("cross-site login refused", status_code=403, media_type="text/plain")
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


@router.post("/session/refresh")
async def refresh(request: Request, st: State) -> Response:
    """A fresh token for a session still valid (the page asks before its token expires), so a
    person at work is not logged out; a revoked client or an expired token gets none."""
    if request.headers.get("x-nvf-page") != "1" or not same_origin(request):
        return Response(status_code=403)
    who = await session_caller(request, st)
    if who is None or st.issuer is None:
        return Response(status_code=401)
    async with st.db.session() as session:
        client = await session.get(ApiClientRow, who.client_id)
    if client is None or client.revoked_at is not None:
        return Response(status_code=401)
    token = st.issuer.issue(client)
    return Response(status_code=204, headers={
        "Set-Cookie": set_cookie_header(token, st.issuer.ttl_s, secure=request.url.scheme == "https"),
        "Cache-Control": "no-store", "X-Session-Expires-In": str(st.issuer.ttl_s)})


@router.post("/logout")
async def logout(request: Request) -> Response:
    if not same_origin(request):
        return Response("cross-site logout refused", status_code=403, media_type="text/plain")
    return RedirectResponse("/login", status_code=303, headers={
        "Set-Cookie": clear_cookie_header(secure=request.url.scheme == "https")})


@router.get("/static/{name}")
async def static(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES or not (STATIC / name).is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(asset(name), media_type=_TYPES[suffix],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
