"""The operator's reads and its one repair, as API routes under `/v1/ops` (operator tokens only):
consumer groups with lag and stuck entries, the dead-letter stream and its resend, the book, the
worklists and market health. Plus `/v1/whoami`, for any caller.

Resending is what `nvf dlq replay` does (marketplace/adapters/dead_letters.py): each entry is put
back on its stream and removed from the dead letters in one MULTI, so it leaves only once resent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis.asyncio as aioredis
import structlog
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import ResponseError

from events import Streams
from marketplace.adapters.dead_letters import DeadLetter, ResendFailed, list_dead_letters, replay
from marketplace.entrypoints.api.deps import State, Who
from marketplace.entrypoints.api.problems import Problem
from marketplace.entrypoints.api.routes.common import IdempotencyKey
from marketplace.entrypoints.api.tokens import Caller
from marketplace.entrypoints.api.writes import Outcome, idempotent
from marketplace.entrypoints.web.public import today_of
from marketplace.parties import ingress_parties
from marketplace.services import market_views
from matchers.reference import care_areas

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1", tags=["operations"])
_NO_STORE = {"Cache-Control": "no-store"}
STUCK_LIMIT = 50
DEAD_LETTER_LIMIT = 500
_LAG_SCAN_LIMIT = 10_000


def operator_only(who: Caller) -> None:
    if not who.is_operator:
        raise Problem(403, "forbidden", "only the national coordination function's operators may do this")


@contextlib.asynccontextmanager
async def admin_redis(st: State) -> AsyncIterator[Any]:
    client = aioredis.from_url(st.extras["redis_url"])
    try:
        yield client
    finally:
        await client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@router.get("/whoami", summary="Who the caller is, from its token")
async def whoami(st: State, who: Who) -> JSONResponse:
    return JSONResponse({"client_id": who.client_id, "role": who.role, "region": who.region,
                         "org_number": who.org_number, "today": today_of(st).isoformat()}, headers=_NO_STORE)


async def _lag(redis: Any, stream: str, info: dict[str, Any]) -> int | None:
    """Entries not yet delivered to the group: Redis 7 reports it; on 6.2 count past last-delivered."""
    if info.get("lag") is not None:
        return int(info["lag"])
    last = _text(info.get("last-delivered-id", "0-0"))
    entries = await redis.xrange(stream, min=f"({last}", max="+", count=_LAG_SCAN_LIMIT)
    return len(entries)


@router.get("/ops/groups", summary="Consumer groups: lag, pending, and entries stuck with a consumer")
async def groups(st: State, who: Who,
                 stuck_ms: Annotated[int, Query(ge=0, le=86_400_000)] = 10_000) -> JSONResponse:
    operator_only(who)
    streams = Streams(st.settings.stream_prefix)
    out: list[dict[str, Any]] = []
    async with admin_redis(st) as redis:
        for stream in streams.all_streams(sorted(care_areas()), ingress_parties()):
            try:
                infos = await redis.xinfo_groups(stream)
            except ResponseError:  # no such stream yet
                continue
            length = await redis.xlen(stream)
            for info in infos:
                info = {_text(k): v for k, v in info.items()}
                group = _text(info["name"])
                pending = await redis.xpending_range(stream, group, min="-", max="+", count=STUCK_LIMIT,
                                                     idle=stuck_ms) if info.get("pending") else []
                out.append({
                    "stream": stream, "group": group, "length": length, "consumers": int(info.get("consumers", 0)),
                    "pending": int(info.get("pending", 0)), "lag": await _lag(redis, stream, info),
                    "last_delivered_id": _text(info.get("last-delivered-id", "")),
                    "stuck": [{"id": _text(p["message_id"]), "consumer": _text(p["consumer"]),
                               "idle_ms": int(p["time_since_delivered"]), "deliveries": int(p["times_delivered"])}
                              for p in pending]})
    return JSONResponse({"stuck_after_ms": stuck_ms, "groups": out}, headers=_NO_STORE)


def _summary(letter: DeadLetter) -> dict[str, Any]:
    try:
        data = json.loads(letter.body)
    except ValueError:
        data = None
    kind = data.get("type") if isinstance(data, dict) else None
    event_id = data.get("event_id") if isinstance(data, dict) else None
    return {"id": letter.id, "stream": letter.stream, "group": letter.group, "entry_id": letter.entry_id,
            "reason": letter.reason, "deliveries": letter.deliveries, "consumer": letter.consumer,
            "failed_at": letter.failed_at, "type": kind if isinstance(kind, str) else None,
            "event_id": event_id if isinstance(event_id, str) else None}


@router.get("/ops/dead-letters", summary="The dead-letter stream: where each entry came from and why it failed")
async def dead_letters(st: State, who: Who) -> JSONResponse:
    operator_only(who)
    async with admin_redis(st) as redis:
        letters = await list_dead_letters(redis, Streams(st.settings.stream_prefix).dead_letter,
                                          count=DEAD_LETTER_LIMIT)
    return JSONResponse({"items": [_summary(d) for d in letters]}, headers=_NO_STORE)


class ResendIn(BaseModel):
    ids: list[Annotated[str, Field(pattern=r"^\d{1,20}-\d{1,20}$")]] = Field(default_factory=list, max_length=1000)
    all: bool = Field(default=False, description="every dead letter (ids must then be empty)")
    dry_run: bool = Field(default=False, description="only show what would be resent, and where to")


@router.post("/ops/dead-letters/resend", summary="Resend dead letters to their original streams (or preview)")
async def resend(request: Request, st: State, who: Who, body: Annotated[ResendIn, Body()],
                 idempotency_key: IdempotencyKey = None) -> JSONResponse:
    """An operator's write like any other: an Idempotency-Key (a retried resend is answered from the
    first, never resent twice) and an audit row, refused or not."""

    async def work() -> Outcome:
        if body.all == bool(body.ids):
            raise Problem(422, "invalid-request", "ids: name the dead letters to resend, or set all (not both)",
                          invalid_params=[{"name": "ids", "rule": "ids_xor_all", "reason": "name ids or set all"}])
        stream = Streams(st.settings.stream_prefix).dead_letter
        async with admin_redis(st) as redis:
            if body.dry_run:
                letters = await list_dead_letters(redis, stream)
                chosen = letters if body.all else [d for d in letters if d.id in set(body.ids)]
            else:
                try:
                    chosen = await replay(redis, stream, None if body.all else list(body.ids))
                except ResendFailed as failed:
                    log.warning("ops.dead_letters_resend_failed", by=who.client_id, id=failed.letter.id,
                                resent=[d.id for d in failed.resent])
                    raise Problem(503, "resend-failed",
                                  f"dead letter {failed.letter.id} could not be put back on {failed.letter.stream}; "
                                  f"it is still a dead letter ({len(failed.resent)} resent before it)") from failed
        found = {d.id for d in chosen}
        if not body.dry_run:
            log.info("ops.dead_letters_resent", by=who.client_id, count=len(chosen), ids=sorted(found))
        return Outcome(200, {"dry_run": body.dry_run, "resent" if not body.dry_run else "would_resend":
                             [{"id": d.id, "stream": d.stream, "type": _summary(d)["type"]} for d in chosen],
                             "missing": sorted(set(body.ids) - found)}, dict(_NO_STORE))

    return await idempotent(st, request, who, idempotency_key, body,
                            action="dead_letters.preview" if body.dry_run else "dead_letters.resend",
                            target=None, work=work, guard=lambda: operator_only(who))


@router.get("/ops/book", summary="The book per care area, held slots and the worklists")
async def book(st: State, who: Who) -> JSONResponse:
    operator_only(who)
    today = today_of(st)
    async with st.db.session() as session:
        body = {"today": today.isoformat(), "book": await market_views.book(session, today),
                "holds": await market_views.holds(session, today),
                "guarantee": await market_views.guarantee_worklist(session, today),
                "referrals": await market_views.unanswered_referrals(session, today)}
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/ops/market-health", summary="Market health and the lägesbild, by day")
async def market_health(st: State, who: Who) -> JSONResponse:
    operator_only(who)
    today = today_of(st)
    async with st.db.session() as session:
        body = await market_views.market_health(session, today)
    return JSONResponse({"today": today.isoformat(), **body}, headers=_NO_STORE)
