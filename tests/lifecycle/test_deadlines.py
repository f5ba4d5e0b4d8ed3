"""Deadline ids are stable (uuid5 of case, kind and due time); a case's clocks, earliest first."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from marketplace.lifecycle import (
    CaseExpired,
    CaseStatus,
    DeadlineKind,
    ExpireCase,
    NotDueYet,
    StaleCommand,
    deadline_id,
    decide,
    due_deadlines,
    next_deadline,
    upcoming_deadlines,
)
from tests.lifecycle.journey import CASE, reach


def test_deadline_id_is_uuid5_of_case_kind_and_due_time_in_utc() -> None:
    due = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)
    expected = uuid.uuid5(uuid.NAMESPACE_URL,
                          f"nvf:case-deadline/{CASE}/provider_answer/2026-03-04T09:00:00+00:00")
    assert deadline_id(CASE, DeadlineKind.PROVIDER_ANSWER, due) == expected
    same_instant = due.astimezone(timezone(timedelta(hours=1)))
    assert deadline_id(CASE, DeadlineKind.PROVIDER_ANSWER, same_instant) == expected
    assert deadline_id(CASE, DeadlineKind.PATIENT_ANSWER, due) != expected
    assert deadline_id("case-2", DeadlineKind.PROVIDER_ANSWER, due) != expected


def test_a_sweep_run_twice_produces_the_same_commands_and_events() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    later = j.now + timedelta(days=30)  # the hold and the 14-day guarantee warning are both due
    first, second = due_deadlines(j.case, later), due_deadlines(j.case, later)
    assert [d.kind for d in first] == [DeadlineKind.PROVIDER_ANSWER, DeadlineKind.GUARANTEE_WARNING]
    assert first == second
    assert [decide(j.case, d.command, later) for d in first] == [
        decide(j.case, d.command, later) for d in second]


def test_upcoming_deadlines_are_ordered_and_the_next_one_is_first() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    upcoming = upcoming_deadlines(j.case)
    assert [d.kind for d in upcoming] == [DeadlineKind.PROVIDER_ANSWER, DeadlineKind.GUARANTEE_WARNING]
    assert next_deadline(j.case) == upcoming[0]


def test_an_unmatched_case_expires_the_day_after_its_window_ends() -> None:
    j = reach(CaseStatus.ON_BOOK)
    (expiry,) = [d for d in upcoming_deadlines(j.case) if d.kind is DeadlineKind.CASE_EXPIRY]
    # window_end 2026-04-30: expiry at 2026-05-01 00:00 in Stockholm (summer time), 22:00 UTC.
    assert expiry.due_at == datetime(2026, 4, 30, 22, 0, tzinfo=UTC)
    assert isinstance(expiry.command, ExpireCase)
    with pytest.raises(NotDueYet):
        decide(j.case, expiry.command, expiry.due_at - timedelta(seconds=1))
    with pytest.raises(StaleCommand):
        decide(j.case, ExpireCase(CASE, expiry.due_at + timedelta(days=1)), expiry.due_at + timedelta(days=2))
    j.now = expiry.due_at
    (expired,) = j.do(expiry.command)
    assert isinstance(expired, CaseExpired)
    assert j.case.status is CaseStatus.EXPIRED and next_deadline(j.case) is None


def test_a_matched_case_does_not_expire_with_its_window() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    assert all(d.kind is not DeadlineKind.CASE_EXPIRY for d in upcoming_deadlines(j.case))


def test_due_deadlines_need_an_aware_now() -> None:
    j = reach(CaseStatus.ON_BOOK)
    with pytest.raises(ValueError, match="aware"):
        due_deadlines(j.case, datetime(2026, 3, 2, 9, 0))
