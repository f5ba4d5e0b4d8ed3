"""The caller's channel on the bus: what the API is asked to do is published on the caller's own
ingress stream, under its own Redis user, and intake's verdict is read back from the store.

So a write through the API is exactly the entry the region's own system could have appended, and
intake (with its producer check) decides it by the same rules.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlmodel import col, select

from events import Envelope, Payload, Streams, new_envelope
from marketplace.adapters.database import Database
from marketplace.adapters.orm import ProcessedEventRow, RejectionRow
from marketplace.adapters.party_clients import PartyClients
from marketplace.services.intake import CONSUMER as INTAKE_CONSUMER


@dataclass(frozen=True)
class Verdict:
    """What intake made of an entry: accepted, refused (the field and the rule), or not known yet."""

    event_id: str
    decided: bool
    refused_field: str | None = None
    refused_rule: str | None = None
    refused_message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.decided and self.refused_rule is None


class Channel:
    def __init__(self, parties: PartyClients, streams: Streams, db: Database, wait_s: float) -> None:
        self.parties = parties
        self.streams = streams
        self.db = db
        self.wait_s = wait_s

    async def send(self, party: str, payload: Payload, *, correlation_id: str | None = None) -> Verdict:
        envelope = new_envelope(payload, producer=party, correlation_id=correlation_id)
        await self.parties.publish(self.streams, [envelope])
        return await self.verdict(envelope)

    async def verdict(self, envelope: Envelope) -> Verdict:
        event_id = str(envelope.event_id)
        deadline = time.monotonic() + self.wait_s
        delay = 0.01
        while True:
            async with self.db.session() as session:
                done = await session.get(ProcessedEventRow, (INTAKE_CONSUMER, event_id))
                if done is not None:
                    refusal = (await session.exec(
                        select(RejectionRow).where(RejectionRow.event_id == event_id)
                        .order_by(col(RejectionRow.id)))).first()
                    if refusal is None:
                        return Verdict(event_id, True)
                    return Verdict(event_id, True, refusal.field, refusal.rule, refusal.message)
            if time.monotonic() >= deadline:
                return Verdict(event_id, False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
