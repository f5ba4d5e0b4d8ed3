"""The message types of the brokering process, one typed body each.

Bodies travel only encrypted. Still, each type carries no more than its step needs: a match notice
is ids only (the party fetches what it may see), and patient identity appears in the referral
alone, which may only be built once the provider has accepted the match (staged release).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.payloads import CaseStateChanged
from notifiers.identifiers import PersonalIdentityNumber

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]

PATIENT_IDENTITY_FIELDS: frozenset[str] = frozenset({
    "personal_identity_number", "coordination_number", "given_name", "family_name", "patient_name",
    "name", "date_of_birth", "address", "postal_address", "phone", "email",
})
"""Field names that identify a patient; only `CARRIES_PATIENT_IDENTITY` types may have them."""

PROVIDER_ACCEPTED_STATES: frozenset[str] = frozenset({
    "provider_accepted", "offered_to_patient", "patient_accepted", "referred",
})
"""Case states (`marketplace.lifecycle.states.CaseStatus` values) in which the provider has
accepted the match and care has not started, so a referral may be built. `referred` is included
so an unanswered referral can be composed again when it is escalated."""


class MessageBody(BaseModel):
    """Base of every body. `TYPE` is the header's `message_type`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]
    CARRIES_PATIENT_IDENTITY: ClassVar[bool] = False
    """Such messages must be flagged confidential in the header."""
    ANSWERS: ClassVar[str | None] = None
    """The message type this one answers; if set, the header must name it in `in_reply_to`."""


class MatchNotice(MessageBody):
    """A party is told a match concerns it. Ids only: no patient, no clinical content."""

    TYPE = "match.notice"
    match_id: Identifier
    case_ref: Identifier
    offer_id: Identifier
    request_id: Identifier


class MatchReleased(MessageBody):
    """A party is told the slot it held for a case is released (declined, expired, withdrawn,
    cancelled). Ids and a cause code only; `referral_id` names a referral to discard, if one was
    sent."""

    TYPE = "match.released"
    match_id: Identifier
    case_ref: Identifier
    offer_id: Identifier
    cause: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    referral_id: Identifier | None = None


class Referral(MessageBody):
    """The referral (remiss) to the performing unit: the only body with patient identity."""

    TYPE = "referral"
    CARRIES_PATIENT_IDENTITY = True
    match_id: Identifier
    case_ref: Identifier
    care_area: Identifier
    personal_identity_number: PersonalIdentityNumber
    given_name: str = Field(min_length=1, max_length=200)
    family_name: str = Field(min_length=1, max_length=200)
    clinical_summary: str = Field(min_length=1, max_length=20_000)


class ReferralAnswer(MessageBody):
    """The performing unit's answer to a referral: accepted with a date, or declined with a reason."""

    TYPE = "referral.answer"
    ANSWERS = "referral"
    match_id: Identifier
    case_ref: Identifier
    decision: Literal["accepted", "declined"]
    scheduled_for: date | None = None
    reason: str = Field(default="", max_length=2_000)

    @model_validator(mode="after")
    def _decision_complete(self) -> ReferralAnswer:
        if self.decision == "declined" and not self.reason:
            raise ValueError("a declined referral needs a reason")
        if self.decision == "declined" and self.scheduled_for is not None:
            raise ValueError("a declined referral has no scheduled date")
        return self


class CarePerformedReport(MessageBody):
    """The performing unit reports the care given. Clinical content, so confidential."""

    TYPE = "care.performed"
    CARRIES_PATIENT_IDENTITY = True
    match_id: Identifier
    case_ref: Identifier
    performed_on: date
    procedure_codes: tuple[Annotated[str, Field(min_length=1, max_length=16)], ...] = Field(min_length=1)
    summary: str = Field(default="", max_length=20_000)


class FollowUp(MessageBody):
    TYPE = "follow_up"
    CARRIES_PATIENT_IDENTITY = True
    match_id: Identifier
    case_ref: Identifier
    followed_up_on: date
    outcome: Literal["as_expected", "complication", "further_care_needed"]
    notes: str = Field(default="", max_length=20_000)


class InvoiceLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["care", "travel", "accommodation", "other"]
    description: str = Field(min_length=1, max_length=500)
    amount_sek: Amount


class Invoice(MessageBody):
    """The invoice at the price locked at match time, plus ancillary costs (kringkostnader)."""

    TYPE = "invoice"
    invoice_id: Identifier
    match_id: Identifier
    case_ref: Identifier
    issued_on: date
    due_on: date
    currency: Literal["SEK"] = "SEK"
    lines: tuple[InvoiceLine, ...] = Field(min_length=1)
    total_sek: Amount

    @model_validator(mode="after")
    def _totals(self) -> Invoice:
        if self.due_on < self.issued_on:
            raise ValueError("due_on must not be before issued_on")
        if sum((line.amount_sek for line in self.lines), Decimal(0)) != self.total_sek:
            raise ValueError("total_sek must equal the sum of the lines")
        return self


MESSAGE_TYPES: dict[str, type[MessageBody]] = {
    cls.TYPE: cls
    for cls in (MatchNotice, MatchReleased, Referral, ReferralAnswer, CarePerformedReport, FollowUp,
                Invoice)
}


class ReferralNotAllowed(Exception):
    """A referral was asked for before the provider accepted the match."""


def build_referral(
    case_state: CaseStateChanged,
    *,
    match_id: str,
    care_area: str,
    personal_identity_number: str,
    given_name: str,
    family_name: str,
    clinical_summary: str,
    accepted_states: frozenset[str] = PROVIDER_ACCEPTED_STATES,
) -> Referral:
    """Build a referral, refusing unless the case's latest state says the provider accepted.

    This is the staged-release gate: before acceptance, no patient identity is put into any
    message, encrypted or not.
    """
    if case_state.to_state not in accepted_states:
        raise ReferralNotAllowed(
            f"case {case_state.case_ref} is {case_state.to_state!r}; a referral needs one of "
            f"{sorted(accepted_states)}")
    return Referral(
        match_id=match_id,
        case_ref=case_state.case_ref,
        care_area=care_area,
        personal_identity_number=personal_identity_number,
        given_name=given_name,
        family_name=family_name,
        clinical_summary=clinical_summary,
    )
