"""Errors as RFC 9457 problem details (`application/problem+json`), as the national REST profile asks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://nvf.example/problems/"

log = structlog.get_logger(__name__)

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 412: "Precondition Failed",
           415: "Unsupported Media Type", 422: "Unprocessable Content", 428: "Precondition Required",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


class Problem(Exception):
    """An answer that is a problem: status, a short type slug, a human detail, and extensions
    (`invalid_params` for a 422: the field and the rule)."""

    def __init__(self, status: int, slug: str, detail: str, *, headers: Mapping[str, str] | None = None,
                 **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions

    def body(self, instance: str) -> dict[str, Any]:
        return {"type": TYPE_BASE + self.slug, "title": _TITLES.get(self.status, "Error"), "status": self.status,
                "detail": self.detail, "instance": instance, **self.extensions}

    def response(self, instance: str) -> JSONResponse:
        return JSONResponse(self.body(instance), status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


def invalid(field: str, rule: str, message: str, *, status: int = 422) -> Problem:
    """A request that breaks a rule: names the field and the rule."""
    return Problem(status, "invalid-request", f"{field}: {message}",
                   invalid_params=[{"name": field, "rule": rule, "reason": message}])


def not_found(what: str) -> Problem:
    # The same answer for what does not exist and for what belongs to someone else.
    return Problem(404, "not-found", f"no {what}")


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        return ".".join(parts[1:]) or parts[0]
    return ".".join(parts)


def install(app: FastAPI, on_refusal: Callable[[Request, Problem], Awaitable[None]] | None = None) -> None:
    """`on_refusal` hears the refusals no route saw (an unauthenticated caller, a body that does not
    parse), so that a refused write is audited even though its route never ran."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        if exc.status == 401 and on_refusal is not None:
            await on_refusal(request, exc)
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        params = [{"name": _field_name(e.get("loc", ())), "rule": str(e.get("type", "invalid")),
                   "reason": str(e.get("msg", ""))} for e in exc.errors()]
        first = params[0] if params else {"name": "request", "reason": "invalid"}
        problem = Problem(422, "invalid-request", f"{first['name']}: {first['reason']}", invalid_params=params)
        if on_refusal is not None:
            await on_refusal(request, problem)
        return problem.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        return Problem(exc.status_code, slug, detail, headers=getattr(exc, "headers", None)).response(
            request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unexpected_error", path=request.url.path)
        return Problem(500, "internal-error", "the server failed; the error is logged").response(request.url.path)
