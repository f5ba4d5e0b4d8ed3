"""Retry, backoff and escalation rules, and the in-memory transport."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifiers.delivery import Delivery, InMemoryDelivery, NextStep, RetryPolicy, message_sent_payload
from notifiers.receipts import Receipt, ReceiptStatus, receipt_received_payload
from notifiers.receiving import InMemorySeenMessages, receive
from tests.notifiers.conftest import STOCKHOLM, UPPSALA, Federation

T0 = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
EXACT = RetryPolicy(jitter=0.0)


def test_backoff_doubles_and_is_capped() -> None:
    delays = [EXACT.delay_after(n) for n in range(1, 10)]
    assert delays[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert max(delays) == EXACT.max_delay
    assert EXACT.delay_after(10_000) == EXACT.max_delay


def test_no_attempt_after_the_last() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0.0)
    assert policy.next_attempt_at(1, T0) == T0 + timedelta(seconds=30)
    assert policy.next_attempt_at(2, T0) == T0 + timedelta(seconds=60)
    assert policy.next_attempt_at(3, T0) is None


@given(attempt=st.integers(1, 50), key=st.text(max_size=40))
def test_jitter_is_bounded_and_reproducible(attempt: int, key: str) -> None:
    policy = RetryPolicy(jitter=0.2)
    delay = policy.delay_after(attempt, key=key)
    assert delay == policy.delay_after(attempt, key=key)
    exact = EXACT.delay_after(attempt)
    assert exact * 0.8 <= delay <= exact * 1.2


def test_jitter_spreads_messages() -> None:
    policy = RetryPolicy(jitter=0.2)
    assert len({policy.delay_after(1, key=str(uuid.uuid4())) for _ in range(20)}) > 10


@pytest.mark.parametrize("kwargs", [dict(first_delay=timedelta(0)), dict(max_attempts=0), dict(jitter=1.0),
                                    dict(multiplier=0.5), dict(receipt_deadline=timedelta(0)),
                                    dict(max_delay=timedelta(seconds=1))])
def test_nonsense_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def _receipt() -> Receipt:
    return Receipt(receipt_id=uuid.uuid4(), created_at=T0, message_id=uuid.uuid4(), issuer_org=UPPSALA,
                   recipient_org=STOCKHOLM, status=ReceiptStatus.ACCEPTED)


def test_next_step() -> None:
    policy = RetryPolicy(max_attempts=2, jitter=0.0, receipt_deadline=timedelta(hours=24))

    def step(**kwargs: object) -> NextStep:
        args: dict[str, object] = dict(now=T0, attempts=0, last_attempt_at=None, handed_over_at=None,
                                       receipt=None)
        return policy.next_step(**{**args, **kwargs})  # type: ignore[arg-type]

    assert step() is NextStep.RETRY  # never tried: go
    assert step(attempts=1, last_attempt_at=T0) is NextStep.WAIT
    assert step(attempts=1, last_attempt_at=T0, now=T0 + timedelta(seconds=30)) is NextStep.RETRY
    assert step(attempts=2, last_attempt_at=T0, now=T0 + timedelta(days=1)) is NextStep.DEAD_LETTER
    handed_over = dict(attempts=1, last_attempt_at=T0, handed_over_at=T0)
    assert step(**handed_over, now=T0 + timedelta(hours=23)) is NextStep.WAIT
    assert step(**handed_over, now=T0 + timedelta(hours=24)) is NextStep.ESCALATE
    assert step(**handed_over, receipt=_receipt(), now=T0 + timedelta(days=9)) is NextStep.DONE


async def test_in_memory_delivery_round_trip(federation: Federation) -> None:
    transport: Delivery = InMemoryDelivery()
    sealed = federation.notice()
    await transport.send(sealed)
    assert isinstance(transport, InMemoryDelivery)
    inbox = transport.take(sealed.header.recipient_address)
    assert inbox == [sealed.to_bytes()] and transport.take(sealed.header.recipient_address) == []
    signed, opened = receive(inbox[0], federation.store(UPPSALA), federation.book, InMemorySeenMessages())
    assert opened is not None

    sent = message_sent_payload(sealed, case_ref="CASE-1")
    assert (sent.message_id, sent.sender, sent.recipient, sent.message_type) == (
        str(sealed.header.message_id), STOCKHOLM, UPPSALA, "match.notice")
    got = receipt_received_payload(signed.receipt, case_ref="CASE-1")
    assert (got.message_id, got.status, got.code, got.detail) == (sent.message_id, "ACCEPTED", None, None)
