"""Test helpers: a case carried along its path with a clock the test controls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from marketplace.lifecycle import (
    DEFAULT_POLICY,
    AcceptMatch,
    AcknowledgeReferral,
    Cancel,
    CaseEvent,
    CaseState,
    CaseStatus,
    Close,
    Command,
    ExpireCase,
    IdentifyNeed,
    Invoice,
    LifecyclePolicy,
    OfferToPatient,
    PlaceOnBook,
    ProposeMatch,
    RecordFollowUp,
    RecordPatientAnswer,
    RecordPayment,
    RecordPerformed,
    Schedule,
    SendReferral,
    Withdraw,
    WithdrawalReason,
    apply,
    decide,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday morning, 09:00 in Stockholm
CASE = "case-0001"
HOME = "01"
PROVIDER = "12"
WAITING_SINCE = date(2026, 1, 5)  # guarantee date 2026-04-05
WINDOW_END = date(2026, 4, 30)
SCHEDULED_FOR = date(2026, 3, 20)


def need(case_ref: str = CASE, *, home: str = HOME, waiting_since: date = WAITING_SINCE,
         window_end: date | None = WINDOW_END, care_area: str = "cataract") -> IdentifyNeed:
    return IdentifyNeed(case_ref, "req-1", home, care_area, waiting_since, window_end)


def proposal(case_ref: str = CASE, *, match_id: str = "m1", offer_id: str = "o1",
             providing_region: str = PROVIDER, price: str = "9800", travel: str = "1404.60",
             accommodation: str = "1200") -> ProposeMatch:
    return ProposeMatch(case_ref, match_id, offer_id, providing_region, "SE2321000016-UNIT",
                        Decimal(price), Decimal(travel), Decimal(accommodation), 234.1)


@dataclass
class Journey:
    """One case, its history, and the test's clock."""

    policy: LifecyclePolicy = DEFAULT_POLICY
    now: datetime = T0
    state: CaseState | None = None
    history: list[CaseEvent] = field(default_factory=list)

    @property
    def case(self) -> CaseState:
        assert self.state is not None
        return self.state

    def advance(self, delta: timedelta) -> Journey:
        self.now += delta
        return self

    def do(self, command: Command, after: timedelta = timedelta(0)) -> list[CaseEvent]:
        self.now += after
        events = decide(self.state, command, self.now, self.policy)
        self.state = apply(self.state, events)
        self.history.extend(events)
        return events


def happy_path(case_ref: str = CASE) -> list[tuple[Command, timedelta, CaseStatus]]:
    """The forward path: each command, the time before it, the state it leads to."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    return [
        (need(case_ref), timedelta(0), CaseStatus.NEED_IDENTIFIED),
        (PlaceOnBook(case_ref), hour, CaseStatus.ON_BOOK),
        (proposal(case_ref), 2 * day, CaseStatus.MATCH_PROPOSED),
        (AcceptMatch(case_ref, "m1"), 20 * hour, CaseStatus.PROVIDER_ACCEPTED),
        (OfferToPatient(case_ref), 2 * hour, CaseStatus.OFFERED_TO_PATIENT),
        (RecordPatientAnswer(case_ref, "m1", accepted=True), day, CaseStatus.PATIENT_ACCEPTED),
        (SendReferral(case_ref, "ref-1"), hour, CaseStatus.REFERRED),
        (AcknowledgeReferral(case_ref, "ref-1"), day, CaseStatus.REFERRAL_ACKNOWLEDGED),
        (Schedule(case_ref, SCHEDULED_FOR), hour, CaseStatus.SCHEDULED),
        (RecordPerformed(case_ref, SCHEDULED_FOR), 14 * day, CaseStatus.PERFORMED),
        (RecordFollowUp(case_ref, "no complications"), 14 * day, CaseStatus.FOLLOWED_UP),
        (Invoice(case_ref, "inv-1"), day, CaseStatus.INVOICED),
        (RecordPayment(case_ref, "pay-1", Decimal("9800")), 30 * day, CaseStatus.SETTLED),
        (Close(case_ref), day, CaseStatus.CLOSED),
    ]


_SIDE_EXITS: dict[CaseStatus, Command] = {
    CaseStatus.WITHDRAWN: Withdraw(CASE, WithdrawalReason.FOUND_SLOT_IN_HOME_REGION),
    CaseStatus.CANCELLED: Cancel(CASE, "registered twice"),
}


def reach(status: CaseStatus, policy: LifecyclePolicy = DEFAULT_POLICY) -> Journey:
    """A journey whose case is in `status`, by the shortest ordinary path."""
    j = Journey(policy)
    if status in _SIDE_EXITS or status is CaseStatus.EXPIRED:
        j.do(need())
        j.do(PlaceOnBook(CASE), timedelta(hours=1))
        if status is CaseStatus.EXPIRED:
            due = j.case.case_expiry_due
            assert due is not None
            j.now = due
            j.do(ExpireCase(CASE, due))
        else:
            j.do(_SIDE_EXITS[status])
        return j
    for command, after, reached in happy_path():
        j.do(command, after)
        if reached is status:
            return j
    raise AssertionError(f"no path to {status}")
