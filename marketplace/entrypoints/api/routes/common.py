"""What the resource routes share: paging, ETags, and who may see which case."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.orm import CaseEventRow, CaseRow, MatchRow
from marketplace.entrypoints.api.problems import Problem, invalid
from marketplace.entrypoints.api.tokens import Caller
from marketplace.lifecycle import CaseState, replay_timeline
from marketplace.lifecycle.states import HAS_MATCH, SLOT_RESERVED
from marketplace.services.timeline import to_entry

Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="items to skip")]
Ref = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^/\x00-\x1f]+$")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255,
                                              description="a unique key per request (a UUID); retries reuse it")]
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=64,
                                       description='the case\'s ETag as read (W/"<version>")')]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=1024)]


def weak_etag(value: Any) -> str:
    return f'W/"{value}"'


def content_etag(body: Any) -> str:
    import json

    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return weak_etag(digest)


def _matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    tags = {t.strip() for t in header.split(",")}
    return "*" in tags or etag in tags or etag.removeprefix("W/") in tags


def read_response(request: Request, model: BaseModel | dict[str, Any], *, etag: str | None = None,
                  cache: str = "private, no-cache") -> Response:
    """A read with its ETag; 304 when the caller's If-None-Match still holds."""
    body = jsonable_encoder(model)
    tag = etag or content_etag(body)
    headers = {"ETag": tag, "Cache-Control": cache, "Vary": "Authorization"}
    if _matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


def page(items: Sequence[BaseModel], limit: int, offset: int, more: bool) -> dict[str, Any]:
    return {"items": items, "limit": limit, "offset": offset, "next_offset": offset + limit if more else None}


def check_if_match(header: str | None, version: int) -> None:
    """If-Match is required on a command; a stale version is refused (412) with the current ETag."""
    current = weak_etag(version)
    if header is None:
        raise Problem(428, "precondition-required", "If-Match is required: send the case's ETag as you read it",
                      invalid_params=[{"name": "If-Match", "rule": "required", "reason": "missing"}])
    if not _matches(header, current):
        raise Problem(412, "stale-version", f"the case is at version {version}, not what If-Match names",
                      headers={"ETag": current}, current_version=version)


# After care the slot is consumed (the row names no current match), but the case goes on between
# its parties to payment: its provider is then the lifecycle's own record of the match.
_AFTER_CARE = [s.value for s in HAS_MATCH - SLOT_RESERVED]


async def provider_of(session: AsyncSession, row: CaseRow) -> str | None:
    """The region providing the case's care now (or, after care, the one that gave it)."""
    if row.current_match_id is not None:
        match = await session.get(MatchRow, row.current_match_id)
        return match.providing_region if match is not None else None
    if row.state in _AFTER_CARE:
        state = state_of(await timeline_rows(session, row.case_ref))
        return state.match.providing_region if state is not None and state.match is not None else None
    return None


async def may_see(session: AsyncSession, who: Caller, row: CaseRow) -> bool:
    return who.is_operator or row.region == who.region or await provider_of(session, row) == who.region


async def visible_case(session: AsyncSession, who: Caller, case_ref: str) -> CaseRow | None:
    """The case if the caller may see it: the operator sees all; a region its own patients' cases and
    those it provides care for. Anything else is as if it did not exist."""
    row = await session.get(CaseRow, case_ref)
    return row if row is not None and await may_see(session, who, row) else None


def visible_cases_query(who: Caller) -> Any:
    """Cases the caller may see, and (rarely) a few more that `may_see` then leaves out: a case after
    care that a region once accepted and the patient declined."""
    query = select(CaseRow)
    if who.is_operator:
        return query
    provided = select(MatchRow.match_id).where(MatchRow.providing_region == who.region)
    accepted = select(MatchRow.case_ref).where(MatchRow.providing_region == who.region,
                                               MatchRow.status == "accepted")
    return query.where((col(CaseRow.region) == who.region) | col(CaseRow.current_match_id).in_(provided)
                       | (col(CaseRow.state).in_(_AFTER_CARE) & col(CaseRow.case_ref).in_(accepted)))


async def timeline_rows(session: AsyncSession, case_ref: str) -> Sequence[CaseEventRow]:
    """The case's event stream (its lifecycle events, by version)."""
    return (await session.exec(select(CaseEventRow).where(CaseEventRow.case_ref == case_ref)
                               .order_by(col(CaseEventRow.version)))).all()


def state_of(rows: Sequence[CaseEventRow]) -> CaseState | None:
    entries = [to_entry(r) for r in rows]
    return replay_timeline(entries) if entries else None


def payload_problem(exc: Exception) -> Problem:
    """A payload the bus would refuse (pydantic's ValidationError), as a 422 naming the field and rule."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        return invalid(".".join(str(p) for p in first["loc"]) or "body", first["type"], first["msg"])
    return invalid("body", "invalid", str(exc))
