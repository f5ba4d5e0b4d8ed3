"""`GET /v1/stream`: the bus live, as server-sent events, for the console and a region's page.

Filtering happens here, never in the browser: the operator sees every stream; a region sees only
entries that concern it (sent on its own channel, naming it as a party, or about a case it may see
through the API), whatever filters it asks for on top.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from events import Streams
from events.envelope import EventParseError, parse_envelope
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.entrypoints.api.deps import ApiState, State, Who
from marketplace.entrypoints.api.routes.common import visible_case
from marketplace.entrypoints.api.tokens import Caller
from marketplace.entrypoints.tail import describe
from marketplace.parties import ingress_parties
from marketplace.services import api_clients
from matchers.reference import care_areas

router = APIRouter(prefix="/v1", tags=["stream"])
REGION_KEYS = ("region", "requesting_region", "providing_region", "purchaser", "provider", "recipient", "producer")
BACKLOG = 50
_BLOCK_MS = 1000
_KEEPALIVE_S = 15.0
_RECHECK_S = 30.0
Text = Annotated[str | None, Query(max_length=128)]


def summary_of(data: dict[str, Any]) -> str:
    """One line, ids and codes only; a sealed body or a receipt is never shown, only that it passed."""
    p = data.get("payload") or {}
    match data.get("type"):
        case "message.sent":
            return f"{p.get('message_type')} to {p.get('recipient')} about {p.get('case_ref')}"
        case "message.escalated":
            return f"{p.get('message_type')} to {p.get('recipient')} escalated: {p.get('reason')}"
        case "receipt.received":
            return f"receipt {p.get('status')} for {p.get('message_id')}"
        case "case.command":
            return f"{p.get('case_ref')}: {p.get('command')}"
        case "sdk.message.submitted" | "sdk.message.delivered":
            return f"sealed message about {p.get('case_ref')}"
        case "sdk.receipt.submitted" | "sdk.receipt.delivered":
            return "signed receipt"
        case "agreement.registered" | "agreement.updated":
            # The original triple names care area and provider; an agreement carries them in its terms.
            terms = p.get("terms") or {}
            if not terms and not p.get("care_area"):  # a draft registered as it stands
                return f"agreement {p.get('agreement_id')} registered by {p.get('purchaser')}"
            areas = p.get("care_area") or ", ".join(terms.get("care_areas") or []) or "?"
            provider = p.get("provider") or terms.get("provider") or "?"
            unit = f" ({terms['unit_name']})" if terms.get("unit_name") else ""
            what = f"agreement {p['agreement_id']}: " if p.get("agreement_id") else ""
            return f"{what}{p.get('purchaser')} may buy {areas} from {provider}{unit}"
        case "clearing.requested":
            return f"round {p.get('round_id')} of {p.get('care_area')} as of {p.get('as_of')}"
    try:
        return describe(data)
    except (KeyError, TypeError, ValueError):
        return str(data.get("type", "?"))


def event_of(streams: Streams, stream: str, entry_id: str, raw: bytes) -> dict[str, Any]:
    """One entry as the page shows it: ids, codes and a one-line summary."""
    try:
        envelope, _ = parse_envelope(raw)
        data = json.loads(envelope.to_json())
    except EventParseError as exc:
        data = {"type": "(unreadable)", "producer": "?", "payload": {"error": str(exc)}}
    payload = data.get("payload") or {}
    sender = streams.party_of_ingress(stream)
    return {"stream": stream, "id": entry_id, "type": data.get("type"), "producer": data.get("producer"),
            "channel": sender, "occurred_at": data.get("occurred_at"), "correlation_id": data.get("correlation_id"),
            "event_id": data.get("event_id"), "care_area": payload.get("care_area"),
            "case_ref": payload.get("case_ref"),
            "regions": sorted({str(payload[k]) for k in REGION_KEYS if isinstance(payload.get(k), str)}),
            "summary": summary_of(data)}


class Visibility:
    """Whether an entry concerns the caller; cases it may see are remembered for the connection."""

    def __init__(self, st: ApiState, who: Caller) -> None:
        self.st, self.who = st, who
        self._cases: set[str] = set()

    async def admits(self, event: dict[str, Any]) -> bool:
        if self.who.is_operator:
            return True
        region = self.who.region
        if event["channel"] is not None:
            # An ingress entry was sent by the party whose stream it is: the caller's own, or
            # another party's command on a case the caller may see.
            if event["channel"] == region:
                return True
        elif region in event["regions"]:
            return True
        case_ref = event["case_ref"]
        if not isinstance(case_ref, str):
            return False
        if case_ref in self._cases:
            return True
        async with self.st.db.session() as session:
            visible = await visible_case(session, self.who, case_ref) is not None
        if visible:
            self._cases.add(case_ref)
        return visible


@dataclass(frozen=True)
class Filters:
    """What the caller asked to see, on top of what it may see.

    Each filter matches what the entry itself says: a care area keeps only entries whose payload
    names that care area (offers, requests, matches, rounds), not the commands and messages of a
    case in it, which carry no care area; finding it would cost a database read per entry. To
    follow one case through, filter by its case ref or correlation id instead.
    """

    types: frozenset[str] = frozenset()
    region: str | None = None
    care_area: str | None = None
    case_ref: str | None = None
    correlation_id: str | None = None

    def admits(self, event: dict[str, Any]) -> bool:
        if self.types and event["type"] not in self.types:
            return False
        if self.region and self.region not in event["regions"] and \
                self.region not in (event["producer"], event["channel"]):
            return False
        if self.care_area and event["care_area"] != self.care_area:
            return False
        if self.case_ref and event["case_ref"] != self.case_ref:
            return False
        return not (self.correlation_id and event["correlation_id"] != self.correlation_id)


async def _active(st: ApiState, client_id: str) -> bool:
    async with st.db.session() as session:
        return await api_clients.is_active(session, client_id)


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: bus\ndata: {json.dumps(event, ensure_ascii=False, default=str)}\n\n".encode()


# Left out of the OpenAPI document: a stream never ends, which schema-driven clients and fuzzers
# cannot handle; the README documents it.
@router.get("/stream", summary="The bus live as server-sent events (a region: only what concerns it)",
            response_class=StreamingResponse, include_in_schema=False)
async def stream(request: Request, st: State, who: Who, type: Annotated[list[str] | None, Query()] = None,
                 region: Text = None, care_area: Text = None, case: Text = None, correlation_id: Text = None,
                 backlog: Annotated[int, Query(ge=0, le=500)] = BACKLOG) -> StreamingResponse:
    streams = Streams(st.settings.stream_prefix)
    names = streams.all_streams(sorted(care_areas()), ingress_parties())
    visibility = Visibility(st, who)
    wanted = Filters(frozenset(t for t in (type or []) if t), region or None, care_area or None, case or None,
                     correlation_id or None)

    async def shown(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if wanted.admits(e) and await visibility.admits(e)]

    async def body() -> AsyncIterator[bytes]:
        client: Any = aioredis.from_url(st.extras["redis_url"])
        try:
            positions: dict[str, Any] = {}
            recent: list[tuple[bytes, dict[str, Any]]] = []
            for name in names:
                last = await client.xrevrange(name, count=max(backlog, 1))
                positions[name] = last[0][0] if last else "0-0"
                if backlog:
                    recent.extend((eid, event_of(streams, name, eid.decode(), f.get(DATA_FIELD.encode(), b"")))
                                  for eid, f in last)
            recent.sort(key=lambda item: tuple(int(p) for p in item[0].split(b"-")))
            for event in (await shown([e for _, e in recent]))[-backlog:] if backlog else []:
                yield _sse(event)
            yield b": live\n\n"
            quiet = 0.0
            checked = asyncio.get_running_loop().time()
            while not await request.is_disconnected():
                if asyncio.get_running_loop().time() - checked > _RECHECK_S:
                    # A stream outlives its token: a client revoked meanwhile loses it too.
                    checked = asyncio.get_running_loop().time()
                    if who.embedded and not await _active(st, who.client_id):
                        break
                replies: Any = await client.xread(positions, block=_BLOCK_MS, count=500)
                batch: list[dict[str, Any]] = []
                for stream_name, entries in replies or []:
                    name = stream_name.decode()
                    for entry_id, fields in entries:
                        positions[name] = entry_id
                        batch.append(event_of(streams, name, entry_id.decode(), fields.get(DATA_FIELD.encode(), b"")))
                events = await shown(batch)
                for event in events:
                    yield _sse(event)
                quiet = 0.0 if events else quiet + _BLOCK_MS / 1000
                if quiet >= _KEEPALIVE_S:
                    quiet = 0.0
                    yield b": keepalive\n\n"
        except asyncio.CancelledError:
            raise
        finally:
            await client.aclose()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
