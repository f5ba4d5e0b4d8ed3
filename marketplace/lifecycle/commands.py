"""Commands: what someone asks the case to do, one small frozen class each, named in the imperative.

Every command names its case. `command_id` is optional: give it when the command comes from
something that may be delivered twice (a bus event, an HTTP request with an idempotency key, a
deadline sweep), and the events decided from it get the same ids every time. Without it the ids
are derived from the case, its version and the command's content, which is just as stable for a
redelivery at the same version.

Commands answering a particular match (accept, decline, the patient's answer, a hold expiry) name
that match, so an answer that arrives after its hold was released and the case re-matched is
refused as stale instead of being applied to the wrong slot.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar
from uuid import UUID

from marketplace.lifecycle.holds import LockedMatch
from marketplace.lifecycle.money import ZERO, money
from marketplace.lifecycle.reasons import PatientDeclineReason, ProviderDeclineReason, WithdrawalReason


@dataclass(frozen=True)
class Command:
    NAME: ClassVar[str]
    case_ref: str
    _: KW_ONLY
    command_id: UUID | None = None


@dataclass(frozen=True)
class IdentifyNeed(Command):
    """Open a case: a patient of `home_region` needs brokering. `waiting_since` is the date of
    the treatment decision, which starts the care-guarantee clock."""

    NAME = "identify_need"
    request_id: str
    home_region: str
    care_area: str
    waiting_since: date
    window_end: date | None = None


@dataclass(frozen=True)
class PlaceOnBook(Command):
    NAME = "place_on_book"


@dataclass(frozen=True)
class ProposeMatch(Command):
    NAME = "propose_match"
    match_id: str
    offer_id: str
    providing_region: str
    unit_hsa_id: str
    price_sek: Decimal
    travel_sek: Decimal = ZERO
    accommodation_sek: Decimal = ZERO
    distance_km: float = 0.0

    def locked(self) -> LockedMatch:
        return LockedMatch(self.match_id, self.offer_id, self.providing_region, self.unit_hsa_id,
                           money(self.price_sek), money(self.travel_sek),
                           money(self.accommodation_sek), self.distance_km)


@dataclass(frozen=True)
class AcceptMatch(Command):
    NAME = "accept_match"
    match_id: str


@dataclass(frozen=True)
class DeclineMatch(Command):
    NAME = "decline_match"
    match_id: str
    reason_code: ProviderDeclineReason
    note: str = ""


@dataclass(frozen=True)
class OfferToPatient(Command):
    NAME = "offer_to_patient"


@dataclass(frozen=True)
class RecordPatientAnswer(Command):
    """The patient's answer. A decline needs a reason code; an acceptance must not have one."""

    NAME = "record_patient_answer"
    match_id: str
    accepted: bool
    reason_code: PatientDeclineReason | None = None
    note: str = ""


@dataclass(frozen=True)
class SendReferral(Command):
    NAME = "send_referral"
    referral_id: str


@dataclass(frozen=True)
class AcknowledgeReferral(Command):
    NAME = "acknowledge_referral"
    referral_id: str


@dataclass(frozen=True)
class EscalateReferral(Command):
    """Raised by the deadline sweep when a referral stays unacknowledged too long."""

    NAME = "escalate_referral"
    referral_id: str
    due_at: datetime


@dataclass(frozen=True)
class Schedule(Command):
    """Book (or move) the date of care."""

    NAME = "schedule"
    scheduled_for: date


@dataclass(frozen=True)
class RecordPerformed(Command):
    NAME = "record_performed"
    performed_on: date


@dataclass(frozen=True)
class RecordFollowUp(Command):
    NAME = "record_follow_up"
    note: str = ""


@dataclass(frozen=True)
class Invoice(Command):
    """The providing region invoices the locked price; the co-payment comes from the policy."""

    NAME = "invoice"
    invoice_id: str


@dataclass(frozen=True)
class RecordPayment(Command):
    """A payment against the invoice; partial payments add up, the case is settled when the
    invoice is paid in full, and paying more than is owed is refused."""

    NAME = "record_payment"
    payment_ref: str
    amount_sek: Decimal


@dataclass(frozen=True)
class Close(Command):
    NAME = "close"


@dataclass(frozen=True)
class Withdraw(Command):
    """The home region takes the case back (found a slot itself, care no longer needed)."""

    NAME = "withdraw"
    reason: WithdrawalReason
    note: str = ""


@dataclass(frozen=True)
class Cancel(Command):
    """The national coordination function ends a case (registered in error, duplicate, ...)."""

    NAME = "cancel"
    reason: str


@dataclass(frozen=True)
class ExpireHold(Command):
    """Raised by the deadline sweep: the provider or the patient did not answer in time."""

    NAME = "expire_hold"
    match_id: str
    due_at: datetime


@dataclass(frozen=True)
class ExpireCase(Command):
    """Raised by the deadline sweep: the request's window ended with the case still unmatched."""

    NAME = "expire_case"
    due_at: datetime


@dataclass(frozen=True)
class WarnGuarantee(Command):
    """Raised by the deadline sweep: the care guarantee is near (days_left >= 0) or breached
    (days_left == -1: the first day past the guarantee date)."""

    NAME = "warn_guarantee"
    days_left: int
    due_on: date


COMMAND_TYPES: tuple[type[Command], ...] = (
    IdentifyNeed, PlaceOnBook, ProposeMatch, AcceptMatch, DeclineMatch, OfferToPatient,
    RecordPatientAnswer, SendReferral, AcknowledgeReferral, EscalateReferral, Schedule,
    RecordPerformed, RecordFollowUp, Invoice, RecordPayment, Close, Withdraw, Cancel, ExpireHold,
    ExpireCase, WarnGuarantee,
)
