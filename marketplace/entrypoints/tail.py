"""`nvf tail`: follow the event streams live, as an operator watches the market."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from rich.console import Console

from events import Streams
from events.envelope import EventParseError, parse_envelope
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.parties import ingress_parties
from marketplace.settings import Settings
from matchers.reference import care_areas

_REGION_KEYS = ("region", "requesting_region", "providing_region", "purchaser", "provider", "recipient")


@dataclass(frozen=True)
class EventFilter:
    types: set[str] = field(default_factory=set)
    region: str | None = None
    care_area: str | None = None
    case_ref: str | None = None

    def admits(self, envelope: dict[str, Any]) -> bool:
        payload = envelope.get("payload") or {}
        if self.types and envelope.get("type") not in self.types:
            return False
        if self.region and self.region != envelope.get("producer") and \
                self.region not in {payload.get(k) for k in _REGION_KEYS} and \
                self.region != payload.get("producer"):
            return False
        if self.care_area and payload.get("care_area") != self.care_area:
            return False
        return not (self.case_ref and payload.get("case_ref") != self.case_ref)


def describe(envelope: dict[str, Any]) -> str:
    p = envelope.get("payload") or {}
    kind = envelope.get("type", "?")
    match kind:
        case "offer.published":
            return (f"{p['offer_id']}: region {p['region']} offers {p['capacity']} x {p['care_area']} "
                    f"{p['window_start']}..{p['window_end']} at {p['price_sek']:.0f} SEK")
        case "request.published":
            return (f"{p['request_id']}: region {p['region']} needs {len(p['patients'])} x {p['care_area']} "
                    f"by {p['window_end']}")
        case "match.proposed":
            return (f"{p['case_ref']} -> {p['offer_id']} (region {p['requesting_region']} -> "
                    f"{p['providing_region']}, {p['distance_km']} km, waited {p['wait_days']} d)")
        case "patient.not_placed":
            return f"{p['case_ref']} not placed: {p['reason']}"
        case "case.state_changed":
            return f"{p['case_ref']} {p['from_state']} -> {p['to_state']} (v{p['version']})"
        case "event.rejected":
            return f"from {p['producer']}: {p['field']} broke {p['rule']}: {p['message']}"
        case "clearing.completed":
            return (f"round {p['round_id']}: placed {p['placed']}/{p['patients']}, {p['wait_days']} wait days, "
                    f"{p['cost_sek']:.0f} SEK")
    return json.dumps(p, ensure_ascii=False)[:160]


async def follow(settings: Settings, redis_url: str, flt: EventFilter, *, console: Console,
                 from_start: bool = False, count: int | None = None, as_json: bool = False) -> int:
    streams = Streams(settings.stream_prefix)
    names = streams.all_streams(sorted(care_areas()), ingress_parties())
    client = aioredis.from_url(redis_url)
    positions: dict[Any, Any] = {}
    for name in names:
        # "$" would be re-read as "now" on every call and drop what arrived in between.
        last = [] if from_start else await client.xrevrange(name, count=1)
        positions[name] = last[0][0] if last else "0-0"
    shown = 0
    try:
        while count is None or shown < count:
            replies: Any = await client.xread(positions, block=1000, count=500)
            for stream_name, entries in replies:
                name = stream_name.decode()
                for entry_id, fields in entries:
                    positions[name] = entry_id
                    raw = fields.get(DATA_FIELD.encode(), b"")
                    try:
                        envelope, _ = parse_envelope(raw)
                        data = json.loads(envelope.to_json())
                    except EventParseError as exc:
                        data = {"type": "(unreadable)", "producer": "?", "payload": {"error": str(exc)}}
                    if not flt.admits(data):
                        continue
                    shown += 1
                    if as_json:
                        console.print_json(json.dumps(data)) if console.is_terminal else print(json.dumps(data))
                    else:
                        console.print(f"[dim]{name.split(':', 1)[-1]:<22}[/dim] [bold]{data['type']:<20}[/bold] "
                                      f"[cyan]{data['producer']:<9}[/cyan] {describe(data)}", highlight=False)
                    if count is not None and shown >= count:
                        break
    finally:
        await client.aclose()
    return shown
