"""The care-guarantee clock: guarantee date = decision + 90 days; warnings 14 and 7 days before,
and the breach on the first day past it; never once care is performed or the case has ended."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from marketplace.lifecycle import (
    BREACH,
    CaseStatus,
    DeadlineKind,
    GuaranteePolicy,
    GuaranteeWarningRaised,
    LifecyclePolicy,
    NotDueYet,
    PlaceOnBook,
    StaleCommand,
    WarnGuarantee,
    Withdraw,
    WithdrawalReason,
    deadline_id,
    decide,
    due_deadlines,
    guarantee_warnings_due,
)
from marketplace.lifecycle.swedish_time import start_of_swedish_day
from tests.lifecycle.journey import CASE, T0, WAITING_SINCE, Journey, need, reach

GUARANTEE_DATE = date(2026, 4, 5)  # 2026-01-05 + 90 days


def on_book() -> Journey:
    j = Journey()
    j.do(need(window_end=None))
    j.do(PlaceOnBook(CASE), timedelta(hours=1))
    return j


def levels_due(j: Journey, today: date) -> list[int]:
    found = guarantee_warnings_due(j.case, today)
    return [d.command.days_left for d in found if isinstance(d.command, WarnGuarantee)]


def raise_due(j: Journey, today: date) -> GuaranteeWarningRaised:
    (d,) = guarantee_warnings_due(j.case, today)
    j.now = max(j.now, start_of_swedish_day(today))
    (event,) = j.do(d.command)
    assert isinstance(event, GuaranteeWarningRaised)
    return event


def test_the_guarantee_date_is_the_treatment_decision_plus_90_calendar_days() -> None:
    assert on_book().case.guarantee_date == GUARANTEE_DATE == WAITING_SINCE + timedelta(days=90)


def test_warnings_fall_on_the_right_days() -> None:
    j = on_book()
    assert levels_due(j, date(2026, 3, 21)) == []
    assert levels_due(j, date(2026, 3, 22)) == [14]
    assert raise_due(j, date(2026, 3, 22)).days_left == 14
    assert levels_due(j, date(2026, 3, 22)) == []  # raised once only
    assert levels_due(j, date(2026, 3, 28)) == []
    assert raise_due(j, date(2026, 3, 29)).days_left == 7
    assert levels_due(j, GUARANTEE_DATE) == []  # the last day within the guarantee
    breach = raise_due(j, date(2026, 4, 6))
    assert breach.days_left == BREACH and breach.due_on == date(2026, 4, 6)
    assert levels_due(j, date(2026, 6, 1)) == []


def test_a_case_arriving_past_its_guarantee_gets_one_breach_warning_not_three() -> None:
    j = on_book()
    (d,) = guarantee_warnings_due(j.case, date(2026, 5, 1))
    assert d.kind is DeadlineKind.GUARANTEE_BREACH
    assert isinstance(d.command, WarnGuarantee) and d.command.days_left == BREACH


def test_the_warning_day_is_the_swedish_calendar_day() -> None:
    j = on_book()
    # 2026-03-22 00:00 in Stockholm is 2026-03-21 23:00 UTC.
    assert due_deadlines(j.case, datetime(2026, 3, 21, 22, 59, tzinfo=UTC)) == []
    (d,) = due_deadlines(j.case, datetime(2026, 3, 21, 23, 0, tzinfo=UTC))
    assert d.due_at == datetime(2026, 3, 21, 23, 0, tzinfo=UTC)
    assert d.deadline_id == deadline_id(CASE, DeadlineKind.GUARANTEE_WARNING, d.due_at)


@pytest.mark.parametrize("status", [CaseStatus.PERFORMED, CaseStatus.INVOICED, CaseStatus.CLOSED,
                                    CaseStatus.WITHDRAWN, CaseStatus.EXPIRED, CaseStatus.CANCELLED])
def test_no_warning_once_care_is_performed_or_the_case_ended(status: CaseStatus) -> None:
    assert guarantee_warnings_due(reach(status).case, date(2026, 12, 31)) == []


def test_a_case_withdrawn_before_its_warning_gets_none() -> None:
    j = on_book()
    j.do(Withdraw(CASE, WithdrawalReason.CARE_NO_LONGER_NEEDED))
    assert due_deadlines(j.case, datetime(2026, 4, 10, tzinfo=UTC)) == []


def test_warning_commands_are_checked_against_the_clock_and_the_case() -> None:
    j = on_book()
    (d,) = guarantee_warnings_due(j.case, date(2026, 3, 22))
    with pytest.raises(NotDueYet):
        decide(j.case, d.command, datetime(2026, 3, 21, 12, tzinfo=UTC))
    j.now = datetime(2026, 3, 22, 6, tzinfo=UTC)
    j.do(d.command)
    with pytest.raises(StaleCommand):
        decide(j.case, d.command, j.now)


def test_warning_days_are_configurable_and_ids_stable() -> None:
    policy = LifecyclePolicy(guarantee=GuaranteePolicy(warn_days_before=(30, 3)))
    j = Journey(policy)
    j.do(need(window_end=None))
    assert [d.command.days_left for d in guarantee_warnings_due(j.case, date(2026, 3, 6), policy.guarantee)
            if isinstance(d.command, WarnGuarantee)] == [30]
    now = datetime(2026, 3, 6, 12, tzinfo=UTC)
    assert due_deadlines(j.case, now, policy) == due_deadlines(j.case, now + timedelta(hours=1), policy)
    with pytest.raises(ValueError):
        GuaranteePolicy(warn_days_before=(-1,))


def test_guarantee_warnings_use_the_clock_the_test_passes_in() -> None:
    j = on_book()
    assert j.now == T0 + timedelta(hours=1)
    # Nothing in the domain reads a clock: the same case gives different answers on different days.
    assert guarantee_warnings_due(j.case, date(2026, 3, 1)) == []
    assert guarantee_warnings_due(j.case, date(2026, 3, 22)) != []
