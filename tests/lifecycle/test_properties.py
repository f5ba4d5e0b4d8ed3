"""Random command sequences: the state machine never reaches an undefined state, refuses exactly
the commands its table does not allow, and replaying the decided events gives the state built
step by step (also through the timeline)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from marketplace.lifecycle import (
    COMMAND_TYPES,
    AcceptMatch,
    AcknowledgeReferral,
    Cancel,
    CaseEvent,
    CaseState,
    CaseStatus,
    Close,
    Command,
    DeclineMatch,
    DomainError,
    EscalateReferral,
    ExpireCase,
    ExpireHold,
    HoldReleased,
    IllegalTransition,
    Invoice,
    OfferToPatient,
    PatientDeclineReason,
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
    append_all,
    apply,
    decide,
    due_deadlines,
    replay,
    replay_timeline,
    targets_of,
    verify,
)
from marketplace.lifecycle.states import HAS_MATCH, HOLD_EXPIRES, SLOT_RESERVED, TERMINAL
from marketplace.lifecycle.swedish_time import swedish_date
from tests.lifecycle.journey import CASE, T0, need, proposal

BY_NAME: dict[str, type[Command]] = {c.NAME: c for c in COMMAND_TYPES}
SHORT_STEPS = [timedelta(0), timedelta(minutes=1), timedelta(hours=1), timedelta(hours=5)]
LONG_STEPS = [timedelta(hours=47), timedelta(hours=48), timedelta(days=3), timedelta(days=5),
              timedelta(days=20)]


def draw_command(data: st.DataObject, state: CaseState | None, now_day: date,
                 deadlines: list[Command]) -> Command:
    status = state.status if state is not None else None
    allowed = allowed_commands(status)
    # Mostly legal commands that keep the case open, so that random walks get deep; sometimes
    # any legal one (ending the case); sometimes anything at all.
    onward = tuple(n for n in allowed if not targets_of(n, status) <= TERMINAL)
    roll = data.draw(st.integers(0, 39))
    pool = onward if onward and roll < 36 else allowed if allowed and roll < 38 else tuple(BY_NAME)
    name = data.draw(st.sampled_from(pool))
    for d in deadlines:
        if name == d.NAME and data.draw(st.booleans()):
            return d
    match_id = state.match.match_id if state is not None and state.match is not None else "m0"
    if data.draw(st.integers(0, 9)) == 0:
        match_id = "m-stale"
    match name:
        case "identify_need":
            return need(waiting_since=now_day - timedelta(days=data.draw(st.integers(0, 120))),
                        window_end=data.draw(st.sampled_from([None, now_day + timedelta(days=30)])))
        case "place_on_book":
            return PlaceOnBook(CASE)
        case "propose_match":
            n = data.draw(st.integers(1, 10**6))
            return proposal(match_id=f"m{n}", offer_id=f"o{data.draw(st.integers(1, 12))}",
                            price=data.draw(st.sampled_from(["0", "9800", "12345.50"])))
        case "accept_match":
            return AcceptMatch(CASE, match_id)
        case "decline_match":
            return DeclineMatch(CASE, match_id, data.draw(st.sampled_from(ProviderDeclineReason)))
        case "offer_to_patient":
            return OfferToPatient(CASE)
        case "record_patient_answer":
            accepted = data.draw(st.booleans())
            reason = data.draw(st.sampled_from(PatientDeclineReason))
            if accepted != (data.draw(st.integers(0, 4)) == 0):  # now and then the wrong shape
                reason = None
            return RecordPatientAnswer(CASE, match_id, accepted, reason)
        case "send_referral":
            return SendReferral(CASE, "ref-1")
        case "acknowledge_referral":
            return AcknowledgeReferral(CASE, data.draw(st.sampled_from(["ref-1", "ref-x"])))
        case "escalate_referral":
            return EscalateReferral(CASE, "ref-1", T0)
        case "schedule":
            return Schedule(CASE, now_day + timedelta(days=data.draw(st.integers(-2, 30))))
        case "record_performed":
            day = state.scheduled_for if state is not None and state.scheduled_for else now_day
            return RecordPerformed(CASE, data.draw(st.sampled_from([day, now_day])))
        case "record_follow_up":
            return RecordFollowUp(CASE)
        case "invoice":
            return Invoice(CASE, "inv-1")
        case "record_payment":
            owed = state.outstanding_sek if state is not None else Decimal(1)
            amount = data.draw(st.sampled_from([owed, owed / 2, owed + 1, Decimal(0)]))
            return RecordPayment(CASE, "pay", amount)
        case "close":
            return Close(CASE)
        case "withdraw":
            return Withdraw(CASE, data.draw(st.sampled_from(WithdrawalReason)))
        case "cancel":
            return Cancel(CASE, data.draw(st.sampled_from(["duplicate", ""])))
        case "expire_hold":
            return ExpireHold(CASE, match_id, T0)
        case "expire_case":
            return ExpireCase(CASE, T0)
        case "warn_guarantee":
            return WarnGuarantee(CASE, 7, now_day)
    raise AssertionError(name)


def check_invariants(state: CaseState) -> None:
    assert isinstance(state.status, CaseStatus)
    assert (state.match is not None) == (state.status in HAS_MATCH)
    assert (state.hold_expires_at is not None) == (state.status in HOLD_EXPIRES)
    if state.match is not None:
        assert state.match.offer_id not in state.excluded_offer_ids
    if state.settlement is not None:
        assert 0 <= state.paid_sek <= state.settlement.invoice_total_sek
    assert state.guarantee_date == state.waiting_since + timedelta(days=90)


@pytest.mark.slow  # 300 random sequences: the longest test of the unit subset
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_command_sequences_keep_the_machine_defined_and_replayable(data: st.DataObject) -> None:
    state: CaseState | None = None
    history: list[CaseEvent] = []
    now = T0
    for _ in range(data.draw(st.integers(1, 60))):
        # Mostly short steps (answers come in time), sometimes long ones (holds lapse, clocks fire).
        now += data.draw(st.sampled_from(SHORT_STEPS if data.draw(st.integers(0, 3)) else LONG_STEPS))
        deadlines = [d.command for d in due_deadlines(state, now)] if state is not None else []
        command = draw_command(data, state, swedish_date(now), deadlines)
        before = state.status if state is not None else None
        try:
            events = decide(state, command, now)
        except IllegalTransition as refused:
            assert command.NAME not in allowed_commands(before)
            assert refused.state is before and refused.allowed == allowed_commands(before)
            continue
        except DomainError:
            assert command.NAME in allowed_commands(before)
            continue
        assert command.NAME in allowed_commands(before)
        assert decide(state, command, now) == events  # deterministic, ids included
        after = apply(state, events)
        assert after is not None
        if events:
            assert after.status in targets_of(command.NAME, before) or (command.NAME in (
                "warn_guarantee", "escalate_referral") and after.status is before)
        released = [e for e in events if isinstance(e, HoldReleased)]
        left_reservation = before in SLOT_RESERVED and after.status not in HAS_MATCH
        assert len(released) == (1 if left_reservation else 0)
        state = after
        history.extend(events)
        check_invariants(state)
        assert state.version == len(history)
        assert replay(history) == state
    event(f"ended {state.status.value if state else 'without a case'}")
    if state is not None:
        assert len({e.event_id for e in history}) == len(history)
        entries = append_all([], history)
        assert verify(entries).ok
        assert replay_timeline(entries) == state
