"""Pages for people, served by `nvf serve` beside the region API: the operator console at `/`, a
region's start page (the same address, for a region's member), the public page at `/public`.

The pages are static HTML and small scripts shipped in this package (no CDN). They act only
through the region API, with the caller's own identity: the login exchanges a client's id and
secret (`nvf clients create`) for the API's own short-lived signed token, kept in an HttpOnly,
SameSite=Strict cookie that the API accepts in place of a bearer header.
"""

from __future__ import annotations

from fastapi import FastAPI

from marketplace.entrypoints.web import ops, pages, public, stream, worklist
from marketplace.entrypoints.web.session import SessionCookieAuth


def install(app: FastAPI, redis_url: str) -> None:
    """Add the pages, their assets and the operator's reads to the API's app."""
    app.state.nvf.extras["redis_url"] = redis_url
    for module in (pages, public, ops, stream, worklist):
        app.include_router(module.router)
    app.add_middleware(SessionCookieAuth)
