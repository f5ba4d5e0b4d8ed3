"""One case carried through every state of the forward path, to closed."""

from __future__ import annotations

from decimal import Decimal

from marketplace.lifecycle import (
    CaseStatus,
    HoldReleased,
    LineKind,
    ReferralSent,
    append_all,
    replay,
    replay_timeline,
    state_changes,
    verify,
)
from tests.lifecycle.journey import CASE, PROVIDER, SCHEDULED_FOR, Journey, happy_path


def test_a_case_goes_through_every_state_to_closed() -> None:
    j = Journey()
    seen = []
    for command, after, expected in happy_path():
        j.do(command, after)
        assert j.case.status is expected
        seen.append(j.case.status)
    assert seen == [
        CaseStatus.NEED_IDENTIFIED, CaseStatus.ON_BOOK, CaseStatus.MATCH_PROPOSED,
        CaseStatus.PROVIDER_ACCEPTED, CaseStatus.OFFERED_TO_PATIENT, CaseStatus.PATIENT_ACCEPTED,
        CaseStatus.REFERRED, CaseStatus.REFERRAL_ACKNOWLEDGED, CaseStatus.SCHEDULED,
        CaseStatus.PERFORMED, CaseStatus.FOLLOWED_UP, CaseStatus.INVOICED, CaseStatus.SETTLED,
        CaseStatus.CLOSED,
    ]
    case = j.case
    assert case.version == len(j.history) == 15  # the payment is recorded, then settles
    assert case.is_terminal and not case.slot_reserved and case.hold_expires_at is None
    assert case.performed_on == SCHEDULED_FOR
    assert case.paid_sek == Decimal("9800.00") and case.outstanding_sek == 0
    assert not any(isinstance(e, HoldReleased) for e in j.history)  # the slot was consumed


def test_the_referral_names_the_unit_that_will_treat() -> None:
    j = Journey()
    for command, after, _ in happy_path()[:7]:
        j.do(command, after)
    sent = j.history[-1]
    assert isinstance(sent, ReferralSent)
    assert (sent.providing_region, sent.unit_hsa_id, sent.match_id) == (PROVIDER, "SE2321000016-UNIT", "m1")


def test_replayed_history_and_rebuilt_timeline_equal_the_incremental_state() -> None:
    j = Journey()
    for command, after, _ in happy_path():
        j.do(command, after)
    assert replay(j.history) == j.case
    entries = append_all([], j.history)
    assert verify(entries).ok
    assert replay_timeline(entries) == j.case


def test_settlement_is_the_locked_price_plus_ancillary_costs_for_the_home_region() -> None:
    j = Journey()
    for command, after, _ in happy_path()[:12]:
        j.do(command, after)
    settlement = j.case.settlement
    assert settlement is not None
    assert settlement.invoice_total_sek == Decimal("9800.00")
    assert settlement.ancillary_sek == Decimal("2604.60")
    assert settlement.home_region_net_cost_sek == Decimal("12404.60")
    assert [line.kind for line in settlement.lines] == [LineKind.PROCEDURE, LineKind.TRAVEL,
                                                         LineKind.ACCOMMODATION]


def test_each_state_change_maps_to_one_bus_event_with_its_version() -> None:
    j = Journey()
    for command, after, _ in happy_path():
        j.do(command, after)
    changes = state_changes(None, j.history)
    assert [c.to_state for c in changes] == [s.value for _, _, s in happy_path()]
    assert changes[0].from_state is None and changes[1].from_state == "need_identified"
    # The payment (version 13) changes no state; settling it (14) does.
    assert [c.version for c in changes] == [*range(1, 13), 14, 15]
    assert {c.case_ref for c in changes} == {CASE}
