"""Delivery: retried with backoff, parked when attempts run out, escalated when no receipt comes,
and nothing lost (or done twice) when the notifier dies half way."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from events import SecureMessageDelivered
from events.envelope import parse_envelope
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import OutboxRow
from marketplace.adapters.outbox import DATA_FIELD, OutboxRelay
from marketplace.adapters.seen_messages import DatabaseSeenMessages, receive
from marketplace.services.delivery import Courier, OutboxDelivery, Undeliverable
from marketplace.services.directory import Federation
from notifiers.delivery import RetryPolicy
from notifiers.envelope import SealedMessage
from notifiers.message_types import MatchNotice
from notifiers.receipts import ReceiptStatus
from tests.messaging.conftest import CASE, MATCH, PROVIDER_ORG, open_case, seal, staged, store

pytestmark = pytest.mark.integration

POLICY = RetryPolicy(first_delay=timedelta(seconds=30), multiplier=2, max_delay=timedelta(hours=1), max_attempts=3,
                     receipt_deadline=timedelta(hours=1), jitter=0)


class FlakyDelivery:
    """Fails the first `budget["failures"]` hand-overs (shared by every pump), then hands over."""

    def __init__(self, inner: OutboxDelivery, budget: dict[str, int]) -> None:
        self.inner, self.budget = inner, budget

    async def send(self, message: SealedMessage) -> None:
        if self.budget["failures"] > 0:
            self.budget["failures"] -= 1
            raise Undeliverable("recipient endpoint not reachable")
        await self.inner.send(message)


def _notice(federation) -> SealedMessage:
    body = MatchNotice(match_id=MATCH, case_ref=CASE, offer_id="off-01", request_id="req-25")
    return seal(federation, body, "202100-9994", PROVIDER_ORG)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands a stored timestamp back without its zone; the marketplace writes UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _courier(federation, failures: int) -> Courier:
    budget = {"failures": failures}
    return Courier(lambda session, ctx: FlakyDelivery(OutboxDelivery(session, ctx, federation.book), budget), POLICY)


async def test_a_failed_hand_over_is_retried_with_backoff_then_parked_and_escalated(database, ctx, clock, federation):
    courier = _courier(federation, failures=10)
    start = clock.now
    async with database.session() as session:
        message_id = await courier.enqueue(session, ctx, _notice(federation), case_ref=CASE, submitted_by="notifier")
        row = await session.get_one(SecureMessageRow, message_id)  # the row as stored
        assert (row.status, row.attempts) == ("retrying", 1)
        assert _utc(row.next_attempt_at) == start + timedelta(seconds=30)

        clock.now = start + timedelta(seconds=29)
        assert (await courier.pump(session, ctx)).message_ids == []
        clock.now = start + timedelta(seconds=30)
        await courier.pump(session, ctx)
        assert (row.status, row.attempts) == ("retrying", 2)
        assert _utc(row.next_attempt_at) == clock.now + timedelta(seconds=60)  # doubled

        clock.now += timedelta(seconds=60)
        result = await courier.pump(session, ctx)
        escalations = await staged(session, ctx.streams.messages, ["message.escalated"])
        sent = await staged(session, ctx.streams.messages, ["message.sent"])
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG))
    assert result.dead_lettered == 1
    assert (row.status, row.attempts, row.last_error) == ("dead_lettered", 3, "recipient endpoint not reachable")
    assert [(e.message_id, e.reason, e.attempts, e.case_ref) for e in escalations] == [
        (row.message_id, "undeliverable", 3, CASE)]
    assert sent == [] and delivered == []


async def test_a_hand_over_that_recovers_is_sent_once(database, ctx, clock, federation):
    courier = _courier(federation, failures=1)
    async with database.session() as session:
        message_id = await courier.enqueue(session, ctx, _notice(federation), case_ref=CASE, submitted_by="notifier")
        row = await session.get_one(SecureMessageRow, message_id)  # the row as stored
        clock.now += timedelta(minutes=5)
        await courier.pump(session, ctx)
        await courier.pump(session, ctx)
        sent = await staged(session, ctx.streams.messages, ["message.sent"])
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG))
    assert (row.status, row.attempts) == ("handed_over", 2)
    assert len(sent) == len(delivered) == 1


async def test_no_receipt_by_the_deadline_is_escalated_once(database, ctx, clock, federation):
    courier = Courier(lambda session, c: OutboxDelivery(session, c, federation.book), POLICY)
    async with database.session() as session:
        message_id = await courier.enqueue(session, ctx, _notice(federation), case_ref=CASE, submitted_by="notifier")
        row = await session.get_one(SecureMessageRow, message_id)  # the row as stored
        assert row.status == "handed_over"
        clock.now += timedelta(minutes=59)
        assert (await courier.pump(session, ctx)).escalated == 0
        clock.now += timedelta(minutes=1)
        assert (await courier.pump(session, ctx)).escalated == 1
        clock.now += timedelta(hours=5)
        assert (await courier.pump(session, ctx)).escalated == 0
        escalations = await staged(session, ctx.streams.messages, ["message.escalated"])
    assert row.status == "escalated"
    assert [(e.message_id, e.reason) for e in escalations] == [(row.message_id, "no_receipt")]


async def test_nothing_is_lost_or_done_twice_when_the_notifier_dies_mid_delivery(
        database, ctx, marketplace_notifier, federation, redis_client):
    async with database.session() as session:
        await open_case(session, ctx)
        held = [r.body for r in (await session.exec(select(OutboxRow).where(OutboxRow.stream == ctx.streams.cases)))
                .all() if '"case.match_held"' in r.body]
        await session.commit()

    # Dies before its transaction commits: nothing of the delivery exists, the event stays pending.
    async with database.session() as session:
        await marketplace_notifier.on_cases(session, held, ctx)
        await session.rollback()
    async with database.session() as session:
        assert (await session.exec(select(SecureMessageRow))).all() == []

    # Redelivered, it is handled once; the relay publishes, then dies before marking the rows
    # published, so a second relay publishes them again (at least once).
    async with database.session() as session:
        await marketplace_notifier.on_cases(session, held, ctx)
        await session.commit()
    relay = OutboxRelay(database, redis_client)
    await relay.flush()
    async with database.session() as session:
        await session.exec(update(OutboxRow).where(col(OutboxRow.stream) == ctx.streams.inbox(PROVIDER_ORG))
                           .values(published_at=None))
        await session.commit()
    await relay.flush()

    inbox = await redis_client.xrange(ctx.streams.inbox(PROVIDER_ORG))
    assert len(inbox) == 2  # the same delivery, twice
    keys = store(federation, PROVIDER_ORG)
    outcomes = []
    async with database.session() as session:
        seen = DatabaseSeenMessages(session, PROVIDER_ORG)
        for _, fields in inbox:
            _, delivered = parse_envelope(fields[DATA_FIELD.encode()])
            assert isinstance(delivered, SecureMessageDelivered)
            signed, opened = await receive(base64.b64decode(delivered.sealed), keys, federation.book, seen)
            outcomes.append((signed.receipt.status, signed.receipt.detail, opened is not None))
        rows = (await session.exec(select(SecureMessageRow))).all()
    # One notice each for the unit and the home region; the unit processed its notice once.
    assert len(rows) == 2
    assert outcomes == [(ReceiptStatus.ACCEPTED, None, True), (ReceiptStatus.REJECTED, "duplicate", False)]


NEW_UNIT = "SE2321000016-NYA01"  # a unit of the provider that no address book lists yet


def _to_new_unit(federation) -> SealedMessage:
    body = MatchNotice(match_id=MATCH, case_ref=CASE, offer_id="off-01", request_id="req-25")
    return seal(federation, body, "202100-9994", PROVIDER_ORG, NEW_UNIT)


def _real_courier(federation) -> Courier:
    # The notifier's own delivery, looking again in the book on disk before giving up on an address.
    return Courier(lambda session, c: OutboxDelivery(session, c, federation.book, refresh=federation.fresh_book),
                   POLICY)


async def test_an_unlisted_address_is_retried_until_its_unit_is_listed_then_delivered(database, ctx, clock,
                                                                                      federation):
    courier = _real_courier(federation)
    async with database.session() as session:
        message_id = await courier.enqueue(session, ctx, _to_new_unit(federation), case_ref=CASE,
                                           submitted_by="notifier")
        row = await session.get_one(SecureMessageRow, message_id)  # the row as stored
        assert (row.status, row.attempts) == ("retrying", 1)
        assert row.last_error == f"{NEW_UNIT} is not an address of {PROVIDER_ORG}"
        # Another process lists the unit in the shared address book (as the notifier does for a match).
        Federation(federation.directory).unit(NEW_UNIT, "01")
        clock.now += timedelta(seconds=30)
        await courier.pump(session, ctx)
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG))
    assert (row.status, row.attempts) == ("handed_over", 2)
    assert [d.message_id for d in delivered] == [row.message_id]


async def test_an_address_never_listed_is_parked_and_escalated(database, ctx, clock, federation):
    courier = _real_courier(federation)
    async with database.session() as session:
        message_id = await courier.enqueue(session, ctx, _to_new_unit(federation), case_ref=CASE,
                                           submitted_by="notifier")
        row = await session.get_one(SecureMessageRow, message_id)  # the row as stored
        for _ in range(POLICY.max_attempts):
            clock.now += POLICY.max_delay
            await courier.pump(session, ctx)
        escalations = await staged(session, ctx.streams.messages, ["message.escalated"])
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG))
    assert (row.status, row.attempts) == ("dead_lettered", POLICY.max_attempts)
    assert [(e.message_id, e.reason) for e in escalations] == [(row.message_id, "undeliverable")]
    assert delivered == []
