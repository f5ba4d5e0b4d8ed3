"""Domain events: what happened to a case, named in the past tense.

They are the case's history: `evolve` folds them into state, the timeline stores them, and a
case is rebuilt from them alone. So each carries everything replay needs (the locked terms of a
match, the deadline fixed for a hold, the guarantee date computed when the need was identified)
and nothing is recomputed from a policy that may have changed since.

Pydantic models, unlike the commands, because they cross a boundary: they are stored as JSON and
read back. Their `TYPE`s live under `case.`; `case.state_changed` on the bus is a different thing
(see `bus.py`), which is why none of these is called that.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from marketplace.lifecycle.holds import LockedMatch
from marketplace.lifecycle.reasons import (
    HoldPhase,
    PatientDeclineReason,
    ProviderDeclineReason,
    ReleaseCause,
    WithdrawalReason,
)
from marketplace.lifecycle.settlement import Settlement

ENVELOPE_FIELDS = frozenset({"event_id", "case_ref", "occurred_at"})


class CaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]

    event_id: UUID
    case_ref: str
    occurred_at: AwareDatetime


class NeedIdentified(CaseEvent):
    TYPE = "case.need_identified"
    request_id: str
    home_region: str
    care_area: str
    waiting_since: date
    guarantee_date: date
    window_end: date | None = None


class PlacedOnBook(CaseEvent):
    TYPE = "case.placed_on_book"


class MatchHeld(CaseEvent):
    """A match was proposed: one slot of the offer is held for this case."""

    TYPE = "case.match_held"
    match: LockedMatch
    provider_answer_due: AwareDatetime


class ProviderAcceptedMatch(CaseEvent):
    TYPE = "case.provider_accepted_match"
    match_id: str
    patient_answer_due: AwareDatetime


class ProviderDeclinedMatch(CaseEvent):
    """Back on the book; the offer is excluded for this case."""

    TYPE = "case.provider_declined_match"
    match_id: str
    offer_id: str
    reason_code: ProviderDeclineReason
    note: str = ""


class OfferedToPatient(CaseEvent):
    TYPE = "case.offered_to_patient"
    match_id: str


class PatientAcceptedOffer(CaseEvent):
    """The slot is booked: from here it no longer expires."""

    TYPE = "case.patient_accepted_offer"
    match_id: str


class PatientDeclinedOffer(CaseEvent):
    """Back on the book; the offer is excluded for this case."""

    TYPE = "case.patient_declined_offer"
    match_id: str
    offer_id: str
    reason_code: PatientDeclineReason
    note: str = ""


class HoldExpired(CaseEvent):
    """Nobody answered in time: back on the book; the offer is excluded for this case."""

    TYPE = "case.hold_expired"
    match_id: str
    offer_id: str
    phase: HoldPhase
    due_at: AwareDatetime


class HoldReleased(CaseEvent):
    """The slot goes back to its offer. Follows the event that caused it, in the same batch.

    For the world outside the case (the book gets the slot back; the notifier tells the
    provider when `notify_provider`, naming the referral to discard if one was sent). The state
    change itself is made by the causing event, so every prefix of a history is a valid state.
    """

    TYPE = "case.hold_released"
    match_id: str
    offer_id: str
    providing_region: str
    unit_hsa_id: str
    cause: ReleaseCause
    notify_provider: bool
    referral_id: str | None = None


class ReferralSent(CaseEvent):
    TYPE = "case.referral_sent"
    referral_id: str
    match_id: str
    providing_region: str
    unit_hsa_id: str


class ReferralEscalated(CaseEvent):
    TYPE = "case.referral_escalated"
    referral_id: str
    escalation: int
    due_at: AwareDatetime


class ReferralAcknowledged(CaseEvent):
    TYPE = "case.referral_acknowledged"
    referral_id: str


class CareScheduled(CaseEvent):
    TYPE = "case.care_scheduled"
    scheduled_for: date
    previous: date | None = None


class CarePerformed(CaseEvent):
    TYPE = "case.care_performed"
    performed_on: date


class FollowUpRecorded(CaseEvent):
    TYPE = "case.follow_up_recorded"
    note: str = ""


class CaseInvoiced(CaseEvent):
    TYPE = "case.invoiced"
    invoice_id: str
    settlement: Settlement


class PaymentRecorded(CaseEvent):
    TYPE = "case.payment_recorded"
    payment_ref: str
    amount_sek: Decimal
    paid_total_sek: Decimal


class CaseSettled(CaseEvent):
    TYPE = "case.settled"
    paid_total_sek: Decimal


class CaseClosed(CaseEvent):
    TYPE = "case.closed"


class CaseWithdrawn(CaseEvent):
    TYPE = "case.withdrawn"
    reason: WithdrawalReason
    note: str = ""


class CaseCancelled(CaseEvent):
    TYPE = "case.cancelled"
    reason: str


class CaseExpired(CaseEvent):
    TYPE = "case.expired"
    due_at: AwareDatetime


class GuaranteeWarningRaised(CaseEvent):
    """`days_left` >= 0: the guarantee date is that many days away; -1: it has passed."""

    TYPE = "case.guarantee_warning_raised"
    days_left: int
    due_on: date
    guarantee_date: date


EVENT_TYPES: dict[str, type[CaseEvent]] = {
    cls.TYPE: cls
    for cls in (
        NeedIdentified, PlacedOnBook, MatchHeld, ProviderAcceptedMatch, ProviderDeclinedMatch,
        OfferedToPatient, PatientAcceptedOffer, PatientDeclinedOffer, HoldExpired, HoldReleased,
        ReferralSent, ReferralEscalated, ReferralAcknowledged, CareScheduled, CarePerformed,
        FollowUpRecorded, CaseInvoiced, PaymentRecorded, CaseSettled, CaseClosed, CaseWithdrawn,
        CaseCancelled, CaseExpired, GuaranteeWarningRaised,
    )
}


def event_payload(event: CaseEvent) -> dict[str, Any]:
    """The event's own content as JSON-able data, without the fields a timeline entry already
    holds (id, case, time), so the two can never disagree."""
    return event.model_dump(mode="json", exclude=set(ENVELOPE_FIELDS))


def event_from_payload(event_type: str, *, event_id: UUID, case_ref: str, occurred_at: Any,
                       payload: dict[str, Any]) -> CaseEvent:
    """The inverse of `event_payload`. Raises KeyError for a type that is not a case event."""
    cls = EVENT_TYPES[event_type]
    return cls.model_validate(
        {**payload, "event_id": event_id, "case_ref": case_ref, "occurred_at": occurred_at}
    )
