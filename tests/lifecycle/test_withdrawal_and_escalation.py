"""Races with the home region: withdrawal (or cancellation) while a hold or a referral is under
way releases the slot and says the provider must be told. And the unanswered referral escalates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.lifecycle import (
    Cancel,
    CaseStatus,
    CaseWithdrawn,
    DeadlineKind,
    EscalateReferral,
    HoldReleased,
    IllegalTransition,
    InvalidCommand,
    LifecyclePolicy,
    NotDueYet,
    ReferralEscalated,
    ReleaseCause,
    StaleCommand,
    Withdraw,
    WithdrawalReason,
    decide,
    due_deadlines,
    next_deadline,
    referral_escalation_deadline,
)
from tests.lifecycle.journey import CASE, PROVIDER, reach

WITHDRAW = Withdraw(CASE, WithdrawalReason.FOUND_SLOT_IN_HOME_REGION, "slot at home on the 12th")


@pytest.mark.parametrize("status", [
    CaseStatus.MATCH_PROPOSED, CaseStatus.PROVIDER_ACCEPTED, CaseStatus.OFFERED_TO_PATIENT,
    CaseStatus.PATIENT_ACCEPTED, CaseStatus.REFERRED, CaseStatus.REFERRAL_ACKNOWLEDGED,
    CaseStatus.SCHEDULED,
])
def test_withdrawal_while_a_slot_is_reserved_releases_it_and_tells_the_provider(status: CaseStatus) -> None:
    j = reach(status)
    withdrawn, released = j.do(WITHDRAW, timedelta(minutes=5))
    assert isinstance(withdrawn, CaseWithdrawn)
    assert withdrawn.reason is WithdrawalReason.FOUND_SLOT_IN_HOME_REGION
    assert isinstance(released, HoldReleased)
    assert (released.offer_id, released.match_id, released.providing_region) == ("o1", "m1", PROVIDER)
    assert released.unit_hsa_id == "SE2321000016-UNIT"
    assert released.cause is ReleaseCause.WITHDRAWN and released.notify_provider
    referral_sent = status in (CaseStatus.REFERRED, CaseStatus.REFERRAL_ACKNOWLEDGED, CaseStatus.SCHEDULED)
    assert released.referral_id == ("ref-1" if referral_sent else None)  # the referral to discard
    assert j.case.status is CaseStatus.WITHDRAWN and j.case.match is None
    assert j.case.end_reason == "found_slot_in_home_region"
    assert next_deadline(j.case) is None  # a withdrawn case has no clock left


def test_withdrawal_before_any_match_releases_nothing() -> None:
    j = reach(CaseStatus.ON_BOOK)
    events = j.do(Withdraw(CASE, WithdrawalReason.CARE_NO_LONGER_NEEDED))
    assert [type(e) for e in events] == [CaseWithdrawn]


def test_withdrawal_after_care_is_refused() -> None:
    j = reach(CaseStatus.PERFORMED)
    with pytest.raises(IllegalTransition):
        decide(j.case, WITHDRAW, j.now)


def test_cancellation_during_a_hold_releases_it_too_and_needs_a_reason() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    with pytest.raises(InvalidCommand, match="reason"):
        decide(j.case, Cancel(CASE, "  "), j.now)
    _, released = j.do(Cancel(CASE, "registered twice"))
    assert isinstance(released, HoldReleased) and released.cause is ReleaseCause.CANCELLED
    assert j.case.status is CaseStatus.CANCELLED


def test_an_unanswered_referral_escalates_after_three_days_and_again_after_six() -> None:
    j = reach(CaseStatus.REFERRED)
    sent_at = j.now
    d = referral_escalation_deadline(j.case)
    assert d is not None and d.kind is DeadlineKind.REFERRAL_ESCALATION
    assert d.due_at == sent_at + timedelta(days=3)
    with pytest.raises(NotDueYet):
        decide(j.case, d.command, d.due_at - timedelta(seconds=1))
    j.now = d.due_at + timedelta(minutes=10)
    assert [x.deadline_id for x in due_deadlines(j.case, j.now)] == [d.deadline_id]
    (escalated,) = j.do(d.command)
    assert isinstance(escalated, ReferralEscalated) and escalated.escalation == 1
    assert j.case.status is CaseStatus.REFERRED
    with pytest.raises(StaleCommand):  # the same sweep result delivered again
        decide(j.case, d.command, j.now)
    second = referral_escalation_deadline(j.case)
    assert second is not None and second.due_at == sent_at + timedelta(days=6)
    assert second.deadline_id != d.deadline_id


def test_referral_escalation_is_configurable() -> None:
    j = reach(CaseStatus.REFERRED, LifecyclePolicy(referral_escalation_after=timedelta(days=1)))
    d = referral_escalation_deadline(j.case, j.policy)
    assert d is not None and d.due_at == j.now + timedelta(days=1)


def test_an_acknowledged_referral_does_not_escalate() -> None:
    j = reach(CaseStatus.REFERRAL_ACKNOWLEDGED)
    assert referral_escalation_deadline(j.case) is None
    with pytest.raises(IllegalTransition, match="escalate_referral"):
        decide(j.case, EscalateReferral(CASE, "ref-1", j.now), j.now)
