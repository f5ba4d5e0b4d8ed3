"""Telling the parties of a case what changed: ids only, the party fetches what it may see."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from events import Envelope, MatchProposed, MessageSent, Streams, new_envelope
from events.envelope import stable_event_id
from marketplace.adapters.orm import NotificationRow
from marketplace.adapters.outbox import stage
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import fresh_events

CONSUMER = "notifier"


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    for envelope, payload in await fresh_events(session, CONSUMER, items):
        if isinstance(payload, MatchProposed):
            notify_match(session, envelope, payload, ctx.streams)


def notify_match(session: AsyncSession, envelope: Envelope, match: MatchProposed, streams: Streams) -> None:
    parties = (
        ("requesting", match.requesting_region, f"region-{match.requesting_region}"),
        ("providing", match.providing_region, match.unit_hsa_id),
    )
    for role, region, address in parties:
        message_id = str(stable_event_id("notice", match.match_id, role))
        session.add(NotificationRow(message_id=message_id, case_ref=match.case_ref, party=region, role=role,
                                    message_type="match_notice", about_event_id=str(envelope.event_id)))
        sent = MessageSent(message_id=message_id, case_ref=match.case_ref, message_type="match_notice",
                           sender="nvf-marketplace", recipient=region, recipient_address=address)
        stage(session, new_envelope(sent, producer=CONSUMER, correlation_id=envelope.correlation_id,
                                    event_id=stable_event_id("message.sent", message_id)), streams.messages)
