"""Refusing a region's input: the field and the rule it broke, in words the sender can act on, and
telling the sender (on its own outgoing stream) and the operators (the `rejections` stream) why.

A refusal never repeats what was sent (an id, a code, a note could hold a patient's identity, and
rejections travel in the clear): the message says what the rule is, not what broke it. Secure
messages are refused in SDK's own vocabulary instead, as a signed REJECTED receipt
(`notifiers.receipts.MessageRejected`), since that is what a region's messaging system reads.
"""

from __future__ import annotations

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events import EventRejected, Streams, new_envelope
from events.envelope import known_producer, stable_event_id
from events.identifiers import new_event_id
from marketplace.adapters.orm import RejectionRow
from marketplace.adapters.outbox import stage
from matchers.validation import Violation

log = structlog.get_logger(__name__)


def reject(session: AsyncSession, streams: Streams, *, field: str, rule: str, message: str,
           event_id: str | None, event_type: str | None, producer: str | None,
           correlation_id: str | None = None, worker: str = "intake", distinct: str | None = None,
           recipient: str | None = None, stream: str | None = None, role: str | None = None) -> None:
    """Record the refusal (a row, a log line, the operators' `rejections` stream) and, when the real
    sender is known from its channel (`recipient`), tell it on its own outgoing stream.

    `field`, `rule` and `message` are ours and never repeat a value the sender chose; `event_id` and
    `producer` are passed on only once known to be harmless (the envelope's own rules),
    `event_type` only when it is a type of the bus."""
    producer = known_producer(producer) if producer else None
    session.add(RejectionRow(event_id=event_id, producer=producer, event_type=event_type, stream=stream,
                             field=field, rule=rule, message=message[:2000]))
    # The same bad event refused twice (a redelivery) tells its sender once; two workers refusing
    # the same entry (both groups of a stream) each tell it; `distinct` keeps apart two refusals of
    # one event id for different content.
    key = ("rejected", event_id, field, rule) if worker == "intake" else ("rejected", worker, event_id, field, rule)
    rid = stable_event_id(*key, *([distinct] if distinct else [])) if event_id else new_event_id()
    payload = EventRejected(rejected_event_id=event_id, rejected_type=event_type, producer=producer,
                            field=field, rule=rule, message=message[:2000])
    # `worker` names the refusing consumer (a group); `role` the worker role it runs in, whose relay
    # publishes what it stages.
    role = role or worker
    envelope = new_envelope(payload, producer=role, event_id=rid, correlation_id=correlation_id or event_id)
    stage(session, envelope, streams.rejections)
    if recipient is not None:
        told = new_envelope(payload, producer=role, event_id=stable_event_id("rejected-to", recipient, rid),
                            correlation_id=correlation_id or event_id)
        stage(session, told, streams.outgoing(recipient))
    log.warning("event.rejected", rejected_event_id=event_id, event_type=event_type, producer=producer,
                field=field, rule=rule, reason=message, stream=stream, worker=worker)


class Refused(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message

    @classmethod
    def from_violation(cls, v: Violation) -> Refused:
        # The domain's own messages name the offending value (useful offline, for a file's author).
        return cls(f"payload.{v.field}", v.rule, RULES.get(v.rule, f"breaks the rule {v.rule}"))


RULES: dict[str, str] = {
    "known_region": "is not a known region code",
    "known_care_area": "is not a known care area",
    "positive_capacity": "capacity must be greater than 0",
    "non_negative": "must not be negative",
    "window_order": "window_end is before window_start",
    "unique_id": "is already used by another item",
}
