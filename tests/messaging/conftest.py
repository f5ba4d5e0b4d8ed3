"""Cases, keys and raw bus entries for the secure-message tests.

The keys of the 21 regions and the marketplace are made per test in its own directory (X25519 and
Ed25519 keys take microseconds); cases are opened and moved on through the lead's lifecycle
service, exactly as the workers do.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import Payload, Streams, new_envelope
from events.envelope import parse_envelope
from marketplace.adapters.orm import MatchRow, OutboxRow
from marketplace.lifecycle import (
    AcceptMatch,
    IdentifyNeed,
    OfferToPatient,
    PlaceOnBook,
    ProposeMatch,
    RecordPatientAnswer,
)
from marketplace.services.context import ServiceContext
from marketplace.services.directory import Federation, with_unit
from marketplace.services.lifecycle import apply_command
from marketplace.services.messaging import Notifier
from marketplace.services.notification import notifier
from notifiers.envelope import SealedMessage, compose
from notifiers.identifiers import functional_address
from notifiers.keystore import KeyStore
from notifiers.message_types import MessageBody
from notifiers.provisioning import open_key_store

HOME, PROVIDER = "25", "01"  # Norrbotten's patient, Stockholm's unit
HOME_ORG, PROVIDER_ORG = "232100-0230", "232100-0016"
UNIT = "SE2321000016-KAT01"
HOME_ADDRESS = functional_address(HOME_ORG)
CASE = "case-25-ct-0001"
MATCH = "match-0001"


class Clock:
    """A hand-moved clock: the services ask it, tests move it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(settings: Any, clock: Clock) -> ServiceContext:
    return ServiceContext(streams=Streams(settings.stream_prefix), clock=clock)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def marketplace_notifier(state_dir: Path) -> Notifier:
    return notifier(state_dir)


@pytest.fixture
def federation(marketplace_notifier: Notifier) -> Federation:
    return marketplace_notifier.federation


def store(federation: Federation, org: str) -> KeyStore:
    _ = federation.book  # provisions the keys on first use
    return open_key_store(federation.directory, org)


def entry(payload: Payload, producer: str) -> str:
    """A raw bus entry, as a party's client would XADD it."""
    return new_envelope(payload, producer=producer).to_json()


def sealed_b64(message: SealedMessage) -> str:
    return base64.b64encode(message.to_bytes()).decode()


def seal(federation: Federation, body: MessageBody, sender: str, recipient: str, address: str | None = None,
         **kwargs: Any) -> SealedMessage:
    # The sender lists the unit as every party does: under the organisation its HSA-id names.
    book = with_unit(federation.book, address) if address else federation.book
    recipient_entry = book.get(recipient)
    assert recipient_entry is not None
    return compose(body, sender=store(federation, sender), recipient=recipient_entry, recipient_address=address,
                   conversation_id=CASE, **kwargs)


async def open_case(session: AsyncSession, ctx: ServiceContext, until: str = "match_proposed") -> None:
    """A case of region 25 matched with Stockholm's unit, moved on as far as `until`."""
    steps: list[Any] = [
        IdentifyNeed(CASE, request_id="req-25", home_region=HOME, care_area="cataract",
                     waiting_since=date(2025, 10, 1)),
        PlaceOnBook(CASE),
        ProposeMatch(CASE, match_id=MATCH, offer_id="off-01", providing_region=PROVIDER, unit_hsa_id=UNIT,
                     price_sek=Decimal("9800")),
    ]
    if until in ("provider_accepted", "patient_accepted"):
        steps += [AcceptMatch(CASE, match_id=MATCH)]
    if until == "patient_accepted":
        steps += [OfferToPatient(CASE), RecordPatientAnswer(CASE, match_id=MATCH, accepted=True)]
    for command in steps:
        await apply_command(session, command, ctx, correlation_id="corr-1", producer="test")
    session.add(MatchRow(match_id=MATCH, round_id="r1", case_ref=CASE, request_id="req-25", offer_id="off-01",
                         care_area="cataract", requesting_region=HOME, providing_region=PROVIDER, unit_hsa_id=UNIT,
                         price_sek=9800, ancillary_cost_sek=0, distance_km=900, wait_days=150))
    await session.flush()


async def staged(session: AsyncSession, stream: str, types: Iterable[str] | None = None) -> list[Any]:
    """The payloads staged in the outbox for `stream` (optionally only of some types)."""
    rows = (await session.exec(select(OutboxRow).where(OutboxRow.stream == stream)
                               .order_by(col(OutboxRow.id)))).all()
    wanted = set(types) if types is not None else None
    out = []
    for row in rows:
        envelope, payload = parse_envelope(row.body)
        if wanted is None or envelope.type in wanted:
            out.append(payload)
    return out
