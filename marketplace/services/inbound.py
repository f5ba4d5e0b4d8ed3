"""Reading what our own workers wrote: parse, drop what this consumer has already processed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events import Envelope, EventParseError, Payload
from events.envelope import parse_envelope
from marketplace.adapters.inbox import already_processed, record_processed

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
