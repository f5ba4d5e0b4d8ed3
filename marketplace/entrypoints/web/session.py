"""The session cookie: the API's own signed token, for a person's browser.

`SessionCookieAuth` lets the API authenticate a page's request by the cookie exactly as by a bearer
header (the same verifier, the same revocation check, the same rate). A request that changes
something must also carry `X-NVF-Page: 1`: a header a cross-site form cannot send, on top of the
cookie's SameSite=Strict.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from marketplace.entrypoints.api.problems import Problem

COOKIE = "nvf_session"
PAGE_HEADER = b"x-nvf-page"
_SAFE = {"GET", "HEAD", "OPTIONS"}
_API_PREFIX = "/v1/"


def token_from_cookie_header(header: str) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except Exception:  # an unreadable Cookie header is no session
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value[:8192] if morsel is not None and morsel.value else None


def set_cookie_header(token: str, max_age: int, *, secure: bool) -> str:
    parts = [f"{COOKIE}={token}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def clear_cookie_header(*, secure: bool) -> str:
    return set_cookie_header("", 0, secure=secure)


class SessionCookieAuth:
    """For `/v1/...` without an Authorization header: the session cookie's token as the bearer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        names = {k for k, _ in headers}
        if b"authorization" in names or b"cookie" not in names:
            await self.app(scope, receive, send)
            return
        cookie_header = b"; ".join(v for k, v in headers if k == b"cookie").decode("latin-1")
        token = token_from_cookie_header(cookie_header)
        if token is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE and (PAGE_HEADER, b"1") not in headers:
            refusal = Problem(403, "forbidden", "a page's request that changes something must carry X-NVF-Page: 1")
            await refusal.response(scope["path"])(scope, receive, send)
            return
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1")))
        await self.app({**scope, "headers": headers}, receive, send)
