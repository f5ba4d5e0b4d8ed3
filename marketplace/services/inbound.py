"""Reading what came in: parse, drop what this consumer has already processed. Our own workers'
entries are trusted (`trusted_events`); a party's are refused by name when they do not parse or do
not belong on the stream (`party_events`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events import Envelope, EventParseError, Payload
from events.envelope import parse_envelope
from marketplace.adapters.inbox import already_processed, record_processed
from marketplace.services.context import ServiceContext
from marketplace.services.refusals import reject

log = structlog.get_logger(__name__)


def trusted_events(items: Iterable[Any]) -> list[tuple[Envelope, Payload]]:
    """Entries our workers wrote; one that does not parse is logged and skipped (it cannot be fixed
    by retrying, and its producer is ours, so the log is where it gets looked at)."""
    parsed = []
    for raw in items:
        try:
            parsed.append(parse_envelope(raw))
        except EventParseError as exc:
            log.error("worker.unreadable_entry", field=exc.field, rule=exc.rule, reason=exc.message,
                      event_id=exc.event_id)
    return parsed


async def fresh_events(session: AsyncSession, consumer: str, items: Iterable[Any]) -> list[tuple[Envelope, Payload]]:
    """The events of the raw entries `items` this consumer has not processed yet (see `unprocessed`)."""
    return await unprocessed(session, consumer, trusted_events(items))


async def unprocessed(session: AsyncSession, consumer: str,
                      events: Sequence[tuple[Envelope, Payload]]) -> list[tuple[Envelope, Payload]]:
    """The parsed `events` this consumer has not processed yet, each recorded as processed now (in
    the caller's transaction, so the record commits with the effect)."""
    seen = await already_processed(session, consumer, (str(e.event_id) for e, _ in events))
    fresh = []
    for envelope, payload in events:
        eid = str(envelope.event_id)
        if eid in seen:
            continue
        seen.add(eid)
        record_processed(session, consumer, eid)
        fresh.append((envelope, payload))
    return fresh


async def party_events(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext, accepted: type[Payload],
                       consumer: str) -> list[tuple[Envelope, Payload]]:
    """Parse what a party wrote; tell it about what does not parse; drop what was processed."""
    parsed: list[tuple[Envelope, Payload]] = []
    for raw in items:
        try:
            parsed.append(parse_envelope(raw))
        except EventParseError as exc:
            reject(session, ctx.streams, field=exc.field, rule=exc.rule, message=exc.message,
                   event_id=exc.event_id, event_type=exc.event_type, producer=exc.producer, worker=consumer,
                   recipient=ctx.channel)
    fresh = []
    for envelope, payload in await unprocessed(session, consumer, parsed):
        if not isinstance(payload, accepted):
            reject(session, ctx.streams, field="type", rule="accepted_here",
                   message=f"this stream takes {accepted.TYPE}, not {envelope.type}",
                   event_id=str(envelope.event_id), event_type=envelope.type, producer=envelope.producer,
                   worker=consumer, recipient=ctx.channel)
            continue
        fresh.append((envelope, payload))
    return fresh
