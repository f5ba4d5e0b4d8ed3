"""Telling a region that its input was refused, and recording why."""

from __future__ import annotations

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events import EventRejected, Streams, new_envelope
from events.envelope import known_producer, stable_event_id
from events.identifiers import new_event_id
from marketplace.adapters.orm import RejectionRow
from marketplace.adapters.outbox import stage

log = structlog.get_logger(__name__)


def reject(session: AsyncSession, streams: Streams, *, field: str, rule: str, message: str,
           event_id: str | None, event_type: str | None, producer: str | None,
           correlation_id: str | None = None, worker: str = "intake", distinct: str | None = None) -> None:
    """Record and tell a refusal. `field`, `rule` and `message` are ours and never repeat a value
    the sender chose; `event_id` and `producer` are passed on only once known to be harmless (the
    envelope's own rules), `event_type` only when it is a type of the bus."""
    producer = known_producer(producer) if producer else None
    session.add(RejectionRow(event_id=event_id, producer=producer, event_type=event_type,
                             field=field, rule=rule, message=message[:2000]))
    # The same bad event refused twice (a redelivery) tells its sender once; `distinct` keeps apart
    # two refusals of one event id for different content.
    rid = (stable_event_id("rejected", event_id, field, rule, *([distinct] if distinct else []))
           if event_id else new_event_id())
    envelope = new_envelope(
        EventRejected(rejected_event_id=event_id, rejected_type=event_type, producer=producer,
                      field=field, rule=rule, message=message[:2000]),
        producer=worker, event_id=rid, correlation_id=correlation_id or event_id,
    )
    stage(session, envelope, streams.rejections)
    log.warning("event.rejected", rejected_event_id=event_id, event_type=event_type, producer=producer,
                field=field, rule=rule, reason=message)
