"""Declines and hold expiries put the case back on the book, release the slot, and exclude the
offer for this patient; holds expire exactly when due, with per-region windows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from marketplace.lifecycle import (
    AcceptMatch,
    CaseStatus,
    DeadlineKind,
    DeclineMatch,
    ExpireHold,
    HoldExpired,
    HoldPhase,
    HoldPolicy,
    HoldReleased,
    InvalidCommand,
    LifecyclePolicy,
    NotDueYet,
    OfferToPatient,
    PatientDeclineReason,
    ProviderDeclinedMatch,
    ProviderDeclineReason,
    RecordPatientAnswer,
    RegionHoldOverride,
    ReleaseCause,
    StaleCommand,
    decide,
    due_deadlines,
    hold_deadline,
)
from tests.lifecycle.journey import CASE, HOME, PROVIDER, proposal, reach

H48 = timedelta(hours=48)


def test_provider_decline_puts_the_case_back_on_the_book_without_that_offer() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    events = j.do(DeclineMatch(CASE, "m1", ProviderDeclineReason.NO_CAPACITY, "theatre closed"),
                  timedelta(hours=3))
    declined, released = events
    assert isinstance(declined, ProviderDeclinedMatch) and declined.reason_code == "no_capacity"
    assert isinstance(released, HoldReleased)
    assert (released.offer_id, released.providing_region, released.cause) == ("o1", PROVIDER,
                                                                             ReleaseCause.PROVIDER_DECLINED)
    assert released.notify_provider is False  # the provider is the one who said no
    case = j.case
    assert case.status is CaseStatus.ON_BOOK
    assert case.excluded_offer_ids == {"o1"}
    assert case.match is None and case.hold_expires_at is None and not case.slot_reserved


def test_the_declined_offer_is_not_proposed_again_but_another_is() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    j.do(DeclineMatch(CASE, "m1", ProviderDeclineReason.CLINICAL_CRITERIA))
    with pytest.raises(InvalidCommand, match="o1"):
        decide(j.case, proposal(match_id="m2", offer_id="o1"), j.now)
    j.do(proposal(match_id="m2", offer_id="o2"), timedelta(hours=1))
    assert j.case.status is CaseStatus.MATCH_PROPOSED and j.case.matches_proposed == 2


def test_patient_decline_needs_a_reason_and_tells_the_provider() -> None:
    j = reach(CaseStatus.OFFERED_TO_PATIENT)
    with pytest.raises(InvalidCommand, match="reason"):
        decide(j.case, RecordPatientAnswer(CASE, "m1", accepted=False), j.now)
    with pytest.raises(InvalidCommand, match="no decline reason"):
        decide(j.case, RecordPatientAnswer(CASE, "m1", accepted=True,
                                           reason_code=PatientDeclineReason.TOO_FAR), j.now)
    events = j.do(RecordPatientAnswer(CASE, "m1", accepted=False, reason_code=PatientDeclineReason.TOO_FAR))
    released = events[-1]
    assert isinstance(released, HoldReleased)
    assert released.cause is ReleaseCause.PATIENT_DECLINED and released.notify_provider
    assert j.case.status is CaseStatus.ON_BOOK and j.case.excluded_offer_ids == {"o1"}


def test_an_answer_to_a_match_no_longer_held_is_stale() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    j.do(DeclineMatch(CASE, "m1", ProviderDeclineReason.NO_CAPACITY))
    j.do(proposal(match_id="m2", offer_id="o2"))
    with pytest.raises(StaleCommand, match="m1"):
        decide(j.case, AcceptMatch(CASE, "m1"), j.now)


def test_the_provider_hold_expires_exactly_48_hours_after_the_proposal() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    proposed_at = j.now
    d = hold_deadline(j.case)
    assert d is not None and d.kind is DeadlineKind.PROVIDER_ANSWER
    assert d.due_at == proposed_at + H48
    just_before = proposed_at + H48 - timedelta(microseconds=1)
    assert due_deadlines(j.case, just_before) == []
    assert [x.kind for x in due_deadlines(j.case, proposed_at + H48)] == [DeadlineKind.PROVIDER_ANSWER]
    with pytest.raises(NotDueYet):
        decide(j.case, d.command, just_before)
    # The provider may answer up to the due time, not at it.
    assert decide(j.case, AcceptMatch(CASE, "m1"), just_before)
    with pytest.raises(InvalidCommand, match="lapsed"):
        decide(j.case, AcceptMatch(CASE, "m1"), proposed_at + H48)

    j.now = proposed_at + H48
    expired, released = j.do(d.command)
    assert isinstance(expired, HoldExpired) and expired.phase is HoldPhase.PROVIDER_ANSWER
    assert isinstance(released, HoldReleased) and released.notify_provider
    assert released.cause is ReleaseCause.HOLD_EXPIRED and released.offer_id == "o1"
    assert j.case.status is CaseStatus.ON_BOOK and j.case.excluded_offer_ids == {"o1"}


def test_a_region_override_changes_the_provider_window_for_that_providing_region_only() -> None:
    policy = LifecyclePolicy(holds=HoldPolicy(overrides={PROVIDER: RegionHoldOverride(
        provider_answer=timedelta(hours=24))}))
    j = reach(CaseStatus.MATCH_PROPOSED, policy)
    d = hold_deadline(j.case)
    assert d is not None and d.due_at == j.now + timedelta(hours=24)
    k = reach(CaseStatus.ON_BOOK, policy)
    k.do(proposal(providing_region="14"))
    assert k.case.hold_expires_at == k.now + H48
    assert policy.holds.provider_answer_window("14") == H48


def test_the_patient_window_runs_five_days_from_the_providers_acceptance() -> None:
    j = reach(CaseStatus.PROVIDER_ACCEPTED)
    accepted_at = j.now
    assert j.case.hold_expires_at == accepted_at + timedelta(days=5)
    j.do(OfferToPatient(CASE), timedelta(days=1))
    d = hold_deadline(j.case)
    assert d is not None and d.kind is DeadlineKind.PATIENT_ANSWER
    assert d.due_at == accepted_at + timedelta(days=5)
    j.now = d.due_at
    expired, _ = j.do(d.command)
    assert isinstance(expired, HoldExpired) and expired.phase is HoldPhase.PATIENT_ANSWER
    assert j.case.status is CaseStatus.ON_BOOK


def test_patient_window_override_follows_the_home_region() -> None:
    policy = LifecyclePolicy(holds=HoldPolicy(overrides={HOME: RegionHoldOverride(
        patient_answer=timedelta(days=3))}))
    j = reach(CaseStatus.PROVIDER_ACCEPTED, policy)
    assert j.case.hold_expires_at == j.now + timedelta(days=3)


def test_a_provider_expiry_arriving_after_acceptance_is_stale() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    d = hold_deadline(j.case)
    assert d is not None
    j.do(AcceptMatch(CASE, "m1"), timedelta(hours=1))
    with pytest.raises(StaleCommand):
        decide(j.case, d.command, d.due_at)


def test_hold_deadline_ids_are_stable_across_sweeps() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    later = j.now + timedelta(days=3)
    first, again = due_deadlines(j.case, later), due_deadlines(j.case, later + timedelta(hours=1))
    assert [d.deadline_id for d in first] == [d.deadline_id for d in again]
    assert first[0].command.command_id == first[0].deadline_id
    assert decide(j.case, first[0].command, later) == decide(j.case, again[0].command, later)
    assert isinstance(first[0].command, ExpireHold)


def test_hold_policy_refuses_non_positive_windows() -> None:
    with pytest.raises(ValueError, match="positive"):
        HoldPolicy(provider_answer=timedelta(0))
    with pytest.raises(ValueError, match="positive"):
        HoldPolicy(overrides={"01": RegionHoldOverride(patient_answer=timedelta(hours=-1))})
