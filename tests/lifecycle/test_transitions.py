"""Only legal transitions happen; an illegal one says where the case is and what it may do."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from marketplace.lifecycle import (
    COMMAND_TYPES,
    TRANSITIONS,
    AcceptMatch,
    AcknowledgeReferral,
    Cancel,
    CaseStatus,
    Close,
    Command,
    DeclineMatch,
    EscalateReferral,
    ExpireCase,
    ExpireHold,
    IllegalTransition,
    InvalidCommand,
    Invoice,
    OfferToPatient,
    PlaceOnBook,
    ProviderDeclineReason,
    RecordFollowUp,
    RecordPatientAnswer,
    RecordPayment,
    RecordPerformed,
    Schedule,
    SendReferral,
    WarnGuarantee,
    Withdraw,
    WithdrawalReason,
    allowed_commands,
    decide,
)
from tests.lifecycle.journey import CASE, T0, need, proposal, reach

# One instance of every command; its content does not matter for the state check, which comes first.
EVERY_COMMAND: dict[str, Command] = {c.NAME: c for c in (
    need(), PlaceOnBook(CASE), proposal(), AcceptMatch(CASE, "m1"),
    DeclineMatch(CASE, "m1", ProviderDeclineReason.NO_CAPACITY), OfferToPatient(CASE),
    RecordPatientAnswer(CASE, "m1", accepted=True), SendReferral(CASE, "ref-1"),
    AcknowledgeReferral(CASE, "ref-1"), EscalateReferral(CASE, "ref-1", T0),
    Schedule(CASE, date(2026, 3, 20)), RecordPerformed(CASE, date(2026, 3, 20)),
    RecordFollowUp(CASE), Invoice(CASE, "inv-1"), RecordPayment(CASE, "p", Decimal(1)), Close(CASE),
    Withdraw(CASE, WithdrawalReason.OTHER), Cancel(CASE, "x"), ExpireHold(CASE, "m1", T0),
    ExpireCase(CASE, T0), WarnGuarantee(CASE, 14, date(2026, 3, 22)),
)}


def test_every_command_type_has_a_rule_and_an_instance_here() -> None:
    names = {c.NAME for c in COMMAND_TYPES}
    assert names == {t.command for t in TRANSITIONS} == set(EVERY_COMMAND)


ILLEGAL = [(status, name) for status in CaseStatus for name in EVERY_COMMAND
           if name not in allowed_commands(status)]


@pytest.mark.parametrize(("status", "name"), ILLEGAL, ids=[f"{s.value}-{n}" for s, n in ILLEGAL])
def test_every_illegal_transition_is_refused_with_the_state_and_the_allowed_commands(
        status: CaseStatus, name: str) -> None:
    j = reach(status)
    with pytest.raises(IllegalTransition) as refused:
        decide(j.case, EVERY_COMMAND[name], j.now + timedelta(days=1))
    assert refused.value.state is status
    assert refused.value.command == name
    assert refused.value.allowed == allowed_commands(status)
    assert f"in state '{status.value}'" in str(refused.value)


def test_the_message_names_command_state_and_allowed_ones() -> None:
    j = reach(CaseStatus.MATCH_PROPOSED)
    with pytest.raises(IllegalTransition) as refused:
        decide(j.case, Schedule(CASE, date(2026, 3, 20)), j.now)
    assert str(refused.value) == (
        "cannot perform 'schedule' in state 'match_proposed'; allowed: accept_match, "
        "decline_match, withdraw, expire_hold, cancel, warn_guarantee"
    )


def test_no_case_yet_allows_only_identify_need() -> None:
    with pytest.raises(IllegalTransition) as refused:
        decide(None, PlaceOnBook(CASE), T0)
    assert refused.value.state is None and refused.value.allowed == ("identify_need",)
    assert "(no case)" in str(refused.value)


def test_terminal_states_allow_nothing() -> None:
    for status in (CaseStatus.CLOSED, CaseStatus.WITHDRAWN, CaseStatus.EXPIRED, CaseStatus.CANCELLED):
        assert allowed_commands(status) == ()


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(None, need(), T0.replace(tzinfo=None))


def test_a_command_for_another_case_is_refused() -> None:
    j = reach(CaseStatus.NEED_IDENTIFIED)
    with pytest.raises(InvalidCommand, match="case-other"):
        decide(j.case, PlaceOnBook("case-other"), j.now)


def test_deciding_twice_gives_the_same_events_with_the_same_ids() -> None:
    j = reach(CaseStatus.ON_BOOK)
    first = decide(j.case, proposal(), j.now)
    again = decide(j.case, proposal(), j.now)
    assert first == again
    other = decide(j.case, proposal(match_id="m2"), j.now)
    assert other[0].event_id != first[0].event_id
