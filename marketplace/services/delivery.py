"""Delivering secure messages: the message outbox, hand-over with retries, escalation.

A message to deliver is first a `secure_messages` row, written in the transaction of whatever
caused it (a case event, a party's submission): if the notifier dies before that commits, the
cause is redelivered and nothing is lost; once it has committed, the row is there to be retried.

Hand-over is to the recipient organisation's inbox stream, itself through the transactional
outbox (`OutboxDelivery`), so a message is marked handed over exactly when its inbox entry is
staged. A hand-over that fails (today: a recipient or functional address missing from the address
book) is retried with `RetryPolicy`'s exponential backoff and, once the attempts are used up,
parked (`dead_lettered`) and escalated. A message handed over but not answered by a receipt within
the policy's receipt deadline is escalated to operators: a `message.escalated` event on the
messages stream (so on the case's timeline and in `nvf tail`) and a warning in the log. Resending
would not help: the receiver refuses an id it already accepted.

`pump` does the due work: the sweeper runs it periodically (`sweep` runs it in a transaction of
its own, for a periodic caller such as `nvf run`).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlmodel import and_, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import MessageEscalated, SecureMessageDelivered, new_envelope
from events.envelope import stable_event_id
from marketplace.adapters.appends import append
from marketplace.adapters.database import Database
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.outbox import stage
from marketplace.services.context import ServiceContext
from notifiers.address_book import AddressBook
from notifiers.delivery import Delivery, NextStep, RetryPolicy, message_sent_payload
from notifiers.envelope import SealedMessage

PRODUCER = "notifier"
SECURE_MESSAGES = SecureMessageRow.__table__  # type: ignore[attr-defined]
DEFAULT_RETRY_POLICY = RetryPolicy(first_delay=timedelta(seconds=30), max_delay=timedelta(hours=1),
                                   max_attempts=8, receipt_deadline=timedelta(hours=24))
log = structlog.get_logger(__name__)


class Undeliverable(Exception):
    """The message could not be handed over now; it may be later (retried with backoff)."""


# Failures of a hand-over worth retrying; anything else is a bug or a database error, which
# must fail the batch rather than be counted as an attempt.
RETRYABLE: tuple[type[BaseException], ...] = (Undeliverable, ConnectionError, TimeoutError, OSError)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sealed_of(row: SecureMessageRow) -> SealedMessage:
    return SealedMessage.from_bytes(base64.b64decode(row.sealed, validate=True))


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time we write is UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class OutboxDelivery:
    """`notifiers.delivery.Delivery` onto inbox streams, staged in the caller's transaction."""

    def __init__(self, session: AsyncSession, ctx: ServiceContext, book: AddressBook,
                 refresh: Callable[[], AddressBook] | None = None) -> None:
        self.session = session
        self.ctx = ctx
        self.book = book
        # How to look again when this copy lacks an address: another notifier may have listed it.
        self.refresh = refresh

    async def send(self, message: SealedMessage) -> None:
        header = message.header
        entry = self.book.get(header.recipient_org)
        if (entry is None or header.recipient_address not in entry.addresses) and self.refresh is not None:
            self.book = self.refresh()
            entry = self.book.get(header.recipient_org)
        if entry is None:
            raise Undeliverable(f"{header.recipient_org} is not in the address book")
        if header.recipient_address not in entry.addresses:
            raise Undeliverable(f"{header.recipient_address} is not an address of {header.recipient_org}")
        payload = SecureMessageDelivered(message_id=str(header.message_id), case_ref=header.conversation_id,
                                         sealed=b64(message.to_bytes()))
        envelope = new_envelope(payload, producer=PRODUCER, correlation_id=header.conversation_id,
                                occurred_at=self.ctx.clock(),
                                event_id=stable_event_id("sdk.delivered", header.message_id))
        stage(self.session, envelope, self.ctx.streams.inbox(header.recipient_org))


DeliveryFactory = Callable[[AsyncSession, ServiceContext], Delivery]


@dataclass
class PumpResult:
    handed_over: int = 0
    retried_later: int = 0
    escalated: int = 0
    dead_lettered: int = 0
    message_ids: list[str] = field(default_factory=list)


class Courier:
    """Queues, hands over, retries and escalates secure messages by the retry policy."""

    def __init__(self, delivery: DeliveryFactory, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> None:
        self.delivery = delivery
        self.policy = policy

    async def enqueue(self, session: AsyncSession, ctx: ServiceContext, message: SealedMessage, *,
                      case_ref: str, submitted_by: str) -> str:
        """Record `message` for delivery and make the first hand-over attempt at once; returns its id.

        A message handed over at once (nearly all) is appended as plain values with the batch's
        other rows (adapters/appends.py): an ORM object per message, built and flushed through the
        unit of work, cost a batch more than its crypto. One that is to be retried is an ORM row,
        which the retries change."""
        header = message.header
        now = ctx.clock()
        fields: dict[str, Any] = dict(
            message_id=str(header.message_id), case_ref=case_ref, message_type=header.message_type,
            sender_org=header.sender_org, recipient_org=header.recipient_org,
            recipient_address=header.recipient_address,
            in_reply_to=str(header.in_reply_to) if header.in_reply_to else None, submitted_by=submitted_by,
            sealed=b64(message.to_bytes()), created_at=now,
        )
        try:
            await self.delivery(session, ctx).send(message)
        except RETRYABLE as exc:
            row = SecureMessageRow(**fields, status="queued", next_attempt_at=now)
            session.add(row)
            self._failed(session, ctx, row, exc, now)
            return row.message_id
        append(session, SECURE_MESSAGES, {
            **fields, "status": "handed_over", "attempts": 1, "last_attempt_at": now, "handed_over_at": now,
            "receipt_due_at": self.policy.receipt_due_at(now), "next_attempt_at": None, "receipt_status": None,
            "receipt_code": None, "receipt_detail": None, "escalated_at": None, "last_error": None})
        self._sent(session, ctx, message, case_ref)
        return fields["message_id"]

    async def attempt(self, session: AsyncSession, ctx: ServiceContext, row: SecureMessageRow,
                      delivery: Delivery, message: SealedMessage | None = None) -> bool:
        now = ctx.clock()
        try:
            await delivery.send(message or sealed_of(row))
        except RETRYABLE as exc:
            self._failed(session, ctx, row, exc, now)
            return False
        row.attempts += 1
        row.last_attempt_at = now
        row.status, row.next_attempt_at, row.last_error = "handed_over", None, None
        row.handed_over_at = now
        row.receipt_due_at = self.policy.receipt_due_at(now)
        session.add(row)
        self._sent(session, ctx, message or sealed_of(row), row.case_ref)
        return True

    def _failed(self, session: AsyncSession, ctx: ServiceContext, row: SecureMessageRow, exc: BaseException,
                now: datetime) -> None:
        row.attempts += 1
        row.last_attempt_at = now
        row.last_error = str(exc)[:500]
        due = self.policy.next_attempt_at(row.attempts, now, key=row.message_id)
        log.warning("message.handover_failed", message_id=row.message_id, case_ref=row.case_ref,
                    attempt=row.attempts, retry_at=due.isoformat() if due else None, error=row.last_error)
        if due is None:
            self._escalate(session, ctx, row, "undeliverable")
        else:
            row.status, row.next_attempt_at = "retrying", due
        session.add(row)

    def _sent(self, session: AsyncSession, ctx: ServiceContext, message: SealedMessage, case_ref: str) -> None:
        sent = message_sent_payload(message, case_ref)
        header = message.header
        stage(session, new_envelope(sent, producer=PRODUCER, correlation_id=case_ref, occurred_at=ctx.clock(),
                                    event_id=stable_event_id("message.sent", header.message_id)),
              ctx.streams.messages)
        log.info("message.sent", message_id=str(header.message_id), case_ref=case_ref,
                 message_type=header.message_type, recipient=header.recipient_org)

    async def pump(self, session: AsyncSession, ctx: ServiceContext, *, limit: int = 500) -> PumpResult:
        """Retry what is due, escalate what has waited past its receipt deadline."""
        now = ctx.clock()
        due = (await session.exec(
            select(SecureMessageRow).where(or_(
                and_(col(SecureMessageRow.status).in_(("queued", "retrying")),
                     col(SecureMessageRow.next_attempt_at) <= now),
                and_(col(SecureMessageRow.status) == "handed_over", col(SecureMessageRow.receipt_due_at) <= now),
            )).order_by(col(SecureMessageRow.created_at)).limit(limit))).all()
        result = PumpResult()
        delivery = self.delivery(session, ctx) if due else None
        for row in due:
            step = self.policy.next_step(now=now, attempts=row.attempts, last_attempt_at=_aware(row.last_attempt_at),
                                         handed_over_at=_aware(row.handed_over_at), receipt=None,
                                         key=row.message_id)
            if step is NextStep.RETRY and delivery is not None:
                if await self.attempt(session, ctx, row, delivery):
                    result.handed_over += 1
                elif row.status == "dead_lettered":
                    result.dead_lettered += 1
                else:
                    result.retried_later += 1
            elif step is NextStep.ESCALATE:
                self._escalate(session, ctx, row, "no_receipt")
                result.escalated += 1
            elif step is NextStep.DEAD_LETTER:
                self._escalate(session, ctx, row, "undeliverable")
                result.dead_lettered += 1
            else:
                continue
            result.message_ids.append(row.message_id)
        return result

    def _escalate(self, session: AsyncSession, ctx: ServiceContext, row: SecureMessageRow, reason: str) -> None:
        row.status = "escalated" if reason == "no_receipt" else "dead_lettered"
        row.escalated_at = ctx.clock()
        row.next_attempt_at = None
        session.add(row)
        payload = MessageEscalated(message_id=row.message_id, case_ref=row.case_ref, message_type=row.message_type,
                                   recipient=row.recipient_org, reason=reason,
                                   attempts=row.attempts)
        stage(session, new_envelope(payload, producer=PRODUCER, correlation_id=row.case_ref, occurred_at=ctx.clock(),
                                    event_id=stable_event_id("message.escalated", row.message_id, reason)),
              ctx.streams.messages)
        log.warning("message.escalated", message_id=row.message_id, case_ref=row.case_ref,
                    message_type=row.message_type, recipient=row.recipient_org, reason=reason,
                    attempts=row.attempts)


async def sweep(db: Database, ctx: ServiceContext, courier: Courier) -> PumpResult:
    """One pump in a transaction of its own (for a periodic caller: a scheduler, `nvf run`)."""
    async with db.session() as session:
        result = await courier.pump(session, ctx)
        await session.commit()
    return result
