"""Delivery: the port a transport implements, and the pure rules for retrying and escalating.

The outbox, the bus and the timeline are wired by the marketplace; this module only decides.
A transport failure (the message did not get handed over) is retried with exponential backoff up
to `max_attempts`, then dead-lettered. A message handed over but not answered with a receipt
within `receipt_deadline` is escalated to a person: resending would not help, since the receiver
refuses a message id it already accepted.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from events.payloads import MessageSent
from notifiers.envelope import SealedMessage
from notifiers.receipts import Receipt


class Delivery(Protocol):
    """Hands a sealed message to the transport for its recipient's functional address.

    Raises on failure to hand over; the receipt comes back later, as a message of its own.
    """

    async def send(self, message: SealedMessage) -> None: ...


class InMemoryDelivery:
    """A transport that keeps what was sent, per functional address, for tests and the demo."""

    def __init__(self) -> None:
        self.sent: defaultdict[str, list[bytes]] = defaultdict(list)

    async def send(self, message: SealedMessage) -> None:
        self.sent[message.header.recipient_address].append(message.to_bytes())

    def take(self, address: str) -> list[bytes]:
        """Everything sent to `address` since the last take."""
        return self.sent.pop(address, [])


class NextStep(StrEnum):
    WAIT = "wait"                  # nothing due yet
    RETRY = "retry"                # hand the message over again now
    DEAD_LETTER = "dead_letter"    # attempts exhausted: park it with the reason
    ESCALATE = "escalate"          # handed over, no receipt by the deadline
    DONE = "done"                  # a receipt came back (ACCEPTED or REJECTED)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_delay: timedelta = timedelta(seconds=30)
    multiplier: float = 2.0
    max_delay: timedelta = timedelta(hours=1)
    max_attempts: int = 8
    receipt_deadline: timedelta = timedelta(hours=24)
    jitter: float = 0.1
    """Each delay is spread by up to this fraction either way, so that after an outage the queued
    messages do not all retry in the same second. The spread is derived from the message key, not
    from a random generator, so a schedule is reproducible and replays give the same times."""

    def __post_init__(self) -> None:
        if self.first_delay <= timedelta(0) or self.max_delay < self.first_delay:
            raise ValueError("delays must be positive and max_delay >= first_delay")
        if self.multiplier < 1 or self.max_attempts < 1 or not 0 <= self.jitter < 1:
            raise ValueError("multiplier >= 1, max_attempts >= 1, 0 <= jitter < 1")
        if self.receipt_deadline <= timedelta(0):
            raise ValueError("receipt_deadline must be positive")

    def delay_after(self, attempt: int, *, key: str = "") -> timedelta:
        """How long to wait after failed attempt `attempt` (1 = the first) before the next."""
        if attempt < 1:
            raise ValueError("attempts are counted from 1")
        # Capped before multiplying out, so a large attempt number cannot overflow.
        base = min(self.first_delay.total_seconds() * self.multiplier ** min(attempt - 1, 64),
                   self.max_delay.total_seconds())
        return timedelta(seconds=base * (1 + self.jitter * _spread(key, attempt)))

    def next_attempt_at(self, attempt: int, failed_at: datetime, *, key: str = "") -> datetime | None:
        """When to make attempt `attempt + 1` after attempt `attempt` failed; None if none is left."""
        if attempt >= self.max_attempts:
            return None
        return failed_at + self.delay_after(attempt, key=key)

    def receipt_due_at(self, handed_over_at: datetime) -> datetime:
        return handed_over_at + self.receipt_deadline

    def next_step(
        self,
        *,
        now: datetime,
        attempts: int,
        last_attempt_at: datetime | None,
        handed_over_at: datetime | None,
        receipt: Receipt | None,
        key: str = "",
    ) -> NextStep:
        """What to do with one outgoing message now. Pure: the caller keeps the counts and times.

        `attempts` counts hand-over attempts made; `handed_over_at` is set once one succeeded.
        """
        if receipt is not None:
            return NextStep.DONE
        if handed_over_at is not None:
            return NextStep.ESCALATE if now >= self.receipt_due_at(handed_over_at) else NextStep.WAIT
        if attempts == 0 or last_attempt_at is None:
            return NextStep.RETRY
        due = self.next_attempt_at(attempts, last_attempt_at, key=key)
        if due is None:
            return NextStep.DEAD_LETTER
        return NextStep.RETRY if now >= due else NextStep.WAIT


def _spread(key: str, attempt: int) -> float:
    """A number in [-1, 1) fixed by the key and the attempt."""
    digest = hashlib.sha256(f"{key}/{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1


def message_sent_payload(message: SealedMessage, case_ref: str) -> MessageSent:
    """The bus event telling the timeline a secure message went out. Readable header fields only."""
    header = message.header
    return MessageSent(
        message_id=str(header.message_id),
        case_ref=case_ref,
        message_type=header.message_type,
        sender=header.sender_org,
        recipient=header.recipient_org,
        recipient_address=header.recipient_address,
    )
