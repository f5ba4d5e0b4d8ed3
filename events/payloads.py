"""Payloads of the events on the bus, one small class each, named in the past tense.

Only structural rules live here (types, shapes, orderings within one payload). Rules that need
reference data (is this a known region code, a known care area) belong to the domain
(`matchers.validation`), because the reference data is the domain's.

No payload carries patient identity: cases travel as pseudonymous `case_ref`s.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from events.bounds import (
    MAX_ARGS,
    MAX_CAPACITY,
    MAX_PATIENTS,
    MAX_PRICE_SEK,
    MAX_TRAVEL_KM,
    check_bus_date,
    check_waiting_since,
)
from events.identifiers import (
    ID_DESCRIPTION,
    MAX_ID_LENGTH,
    IdentifierError,
    check_event_id,
    check_identifier,
    holds_personal_number,
)

RegionCode = Annotated[str, Field(pattern=r"^\d{2}$", description="two-digit region code")]
CareArea = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")]
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
"""An id the marketplace itself makes (match, message ids): printable ASCII, no spaces."""


def _safe_id(value: str) -> str:
    try:
        return check_identifier(value)
    except IdentifierError as exc:
        raise PydanticCustomError(exc.rule, str(exc)) from None


BusId = Annotated[str, Field(min_length=3, max_length=MAX_ID_LENGTH, description=ID_DESCRIPTION),
                  AfterValidator(_safe_id)]
"""An id a region chooses: shaped so that it cannot carry a personnummer or a name."""
def _hsa_id(value: str) -> str:
    if holds_personal_number(value[2:12]):
        # A sole trader's organisation number is their personnummer: not on the bus.
        raise PydanticCustomError("no_personal_number", "the organisation number is a personal identity number")
    return value


HsaId = Annotated[str, Field(pattern=r"^SE\d{10}-[0-9A-Z]{1,12}$", max_length=25,
                             description="a care unit's HSA id: SE, the region's organisation number, '-', "
                                         "a suffix of at most 12 capitals and digits"),
                  AfterValidator(_hsa_id)]
BusDate = Annotated[date, AfterValidator(check_bus_date)]


_NUMBER_RUN = re.compile(r"\d[\d\s+-]{8,16}\d")


def _no_personal_number(text: str) -> str:
    for run in _NUMBER_RUN.findall(text):
        if holds_personal_number(re.sub(r"\D", "", run)):
            raise PydanticCustomError("no_personal_number", "the text holds a personal identity number")
    return text


FunctionalText = Annotated[str, AfterValidator(_no_personal_number)]
AgreementId = Annotated[Identifier, AfterValidator(_no_personal_number)]
"""A region's own contract number ("NLL-2026-001"): any printable ASCII, but no personal identity number."""
"""Text a region writes about its units and functions (an agreement's unit name, price terms,
contacts): names of organisations and functions, never of patients. A personal identity number in
it is refused; a person's name cannot be told from a unit's, so that rests with the region, as
SDK's functional addresses do."""
WaitingSince = Annotated[date, AfterValidator(check_waiting_since)]
Amount = Annotated[float, Field(ge=0, le=MAX_PRICE_SEK, allow_inf_nan=False)]
NotPlacedReason = Literal["no_feasible_offer", "capacity_exhausted"]
OfferWithdrawalReason = Literal["capacity_gone", "unit_unavailable", "entered_in_error", "other"]
RequestWithdrawalReason = Literal["found_slot_in_home_region", "care_no_longer_needed", "other"]
"""The lifecycle's withdrawal reasons (`marketplace.lifecycle.reasons.WithdrawalReason`)."""


class Payload(BaseModel):
    """Base of every payload. `TYPE` is the envelope's `type`; `VERSION` its `schema_version`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1


class _Window(Payload):
    window_start: BusDate
    window_end: BusDate

    @field_validator("window_end")
    @classmethod
    def _window_ordered(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("window_start")
        if start is not None and end < start:
            raise PydanticCustomError("window_order", "window_end {end} is before window_start {start}",
                                      {"end": end.isoformat(), "start": start.isoformat()})
        return end


# --- published by regions -------------------------------------------------------------------


class OfferPublished(_Window):
    """A providing region offers a block of capacity."""

    TYPE = "offer.published"
    offer_id: BusId
    region: RegionCode
    unit_hsa_id: HsaId
    care_area: CareArea
    capacity: int = Field(gt=0, le=MAX_CAPACITY,
                          description=f"patients the offer can take: 1 to {MAX_CAPACITY}")
    price_sek: Amount


class OfferWithdrawn(Payload):
    """A providing region takes an offer off the book. The reason is a code: no free text travels."""

    TYPE = "offer.withdrawn"
    offer_id: BusId
    region: RegionCode
    reason_code: OfferWithdrawalReason = "other"


class Patient(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    case_ref: BusId
    waiting_since: WaitingSince


class RequestPublished(_Window):
    """A requesting region asks for care for patients past (or near) the care guarantee."""

    TYPE = "request.published"
    request_id: BusId
    region: RegionCode
    care_area: CareArea
    max_price_sek: Amount | None = None
    max_travel_km: float | None = Field(default=None, ge=0, le=MAX_TRAVEL_KM, allow_inf_nan=False)
    excluded_regions: tuple[RegionCode, ...] = Field(default=(), max_length=21)
    requires_agreement: bool = False
    patients: tuple[Patient, ...] = Field(min_length=1, max_length=MAX_PATIENTS)

    @model_validator(mode="after")
    def _unique_case_refs(self) -> RequestPublished:
        refs = [p.case_ref for p in self.patients]
        if len(set(refs)) != len(refs):
            raise ValueError("patients: case_ref must be unique within a request")
        return self


class RequestWithdrawn(Payload):
    """The home region withdraws a whole request, or only some of its cases."""

    TYPE = "request.withdrawn"
    request_id: BusId
    region: RegionCode
    case_refs: tuple[BusId, ...] | None = Field(default=None, min_length=1, max_length=MAX_PATIENTS)
    reason_code: RequestWithdrawalReason = "other"


Phone = Annotated[str, Field(min_length=5, max_length=40, pattern=r"^\+?[0-9][0-9 ()-]{3,38}[0-9]$")]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")]


class Contact(BaseModel):
    """How to reach a performing unit or a region's contracting function. `name` is a function or a
    unit ("Vårdförmedlingen", "Ögonkliniken Sunderbyn"), never a patient."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: FunctionalText = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    email: Email | None = None
    address: FunctionalText = Field(default="", max_length=300)


class AgreementTerms(BaseModel):
    """What a care agreement says: who performs which care, when, and at what price.

    `unit_hsa_id` is checked as an HSA-id by the domain (`marketplace.agreements.rules`), which
    also knows the region codes and care areas."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: RegionCode
    unit_hsa_id: str = Field(min_length=3, max_length=64)
    unit_name: FunctionalText = Field(min_length=1, max_length=200)
    care_areas: tuple[CareArea, ...] = Field(min_length=1, max_length=20)
    valid_from: date
    valid_to: date | None = Field(default=None, description="last day of validity; none: until ended")
    price_sek: float = Field(ge=0, le=10_000_000, description="price per patient (SEK)")
    price_terms: FunctionalText = Field(default="", max_length=1000)
    unit_contact: Contact
    region_contact: Contact

    @field_validator("valid_to")
    @classmethod
    def _validity_ordered(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if end is not None and start is not None and end < start:
            raise PydanticCustomError("validity_order", "valid_to {end} is before valid_from {start}",
                                      {"end": end.isoformat(), "start": start.isoformat()})
        return end

    @field_validator("care_areas")
    @classmethod
    def _unique_areas(cls, areas: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(areas)) != len(areas):
            raise PydanticCustomError("unique_care_areas", "care_areas must not repeat a care area")
        return areas


class AgreementDrafted(Payload):
    """The purchasing region drafts a care agreement (or revises its draft); a draft counts for
    nothing until it is registered."""

    TYPE = "agreement.drafted"
    agreement_id: AgreementId
    purchaser: RegionCode
    terms: AgreementTerms


class AgreementRegistered(Payload):
    """A care agreement (vårdavtal) counts from now on, in one of two forms.

    - `agreement_id` (and optionally `terms`): register that agreement: a draft as it stands (or
      with these terms), or, with `terms`, create or revise a registered one (a bulk import).
    - the original triple, `purchaser` may buy `care_area` from `provider`, with no `agreement_id`:
      an open-ended registered agreement without a named unit, as scenario files describe them.
    """

    TYPE = "agreement.registered"
    purchaser: RegionCode
    provider: RegionCode | None = None
    care_area: CareArea | None = None
    agreement_id: AgreementId | None = None
    terms: AgreementTerms | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AgreementRegistered:
        if self.agreement_id is None:
            if self.provider is None or self.care_area is None or self.terms is not None:
                raise PydanticCustomError(
                    "agreement_form", "give agreement_id (and optionally terms), or purchaser, provider and "
                                      "care_area without agreement_id")
        elif self.provider is not None or self.care_area is not None:
            raise PydanticCustomError("agreement_form",
                                      "with agreement_id, provider and care areas belong in terms")
        return self


class AgreementUpdated(Payload):
    """New terms for a draft or a registered agreement: a new version in its timeline."""

    TYPE = "agreement.updated"
    agreement_id: AgreementId
    purchaser: RegionCode
    terms: AgreementTerms


AgreementEndReason = Literal["expired", "renegotiated", "terminated", "replaced", "other"]


class AgreementEnded(Payload):
    """The purchasing region ends a registered agreement; it counts for matching before `ended_on` only."""

    TYPE = "agreement.ended"
    agreement_id: AgreementId
    purchaser: RegionCode
    ended_on: date
    # A code, not words: free text travels on no stream (the README's "What the bus accepts").
    reason: AgreementEndReason = "other"


class ClearingRoundRequested(Payload):
    """Ask the matcher of one care area to clear its book as of a day."""

    TYPE = "clearing.requested"
    round_id: BusId
    care_area: CareArea
    as_of: BusDate
    policy: Literal["optimal", "greedy"] = "optimal"


# --- published by workers -------------------------------------------------------------------


class ClearingRoundCompleted(Payload):
    TYPE = "clearing.completed"
    round_id: Identifier
    care_area: CareArea
    as_of: date
    patients: int
    placed: int
    wait_days: int
    cost_sek: float
    left_out: dict[str, int] = Field(default_factory=dict, description="items of the book the round could "
                                     "not use, counted per `kind.rule` (e.g. `offer.price_sek`); see the log")


class MatchProposed(Payload):
    """The matcher proposes one patient for one slot of an offer: a hold on that slot."""

    TYPE = "match.proposed"
    match_id: Identifier
    round_id: Identifier
    case_ref: Identifier
    request_id: Identifier
    offer_id: Identifier
    care_area: CareArea
    requesting_region: RegionCode
    providing_region: RegionCode
    unit_hsa_id: Identifier
    price_sek: float
    ancillary_cost_sek: float
    distance_km: float
    wait_days: int


class PatientNotPlaced(Payload):
    TYPE = "patient.not_placed"
    round_id: Identifier
    case_ref: Identifier
    request_id: Identifier
    care_area: CareArea
    requesting_region: RegionCode
    reason: NotPlacedReason


Detail = str | int | float | bool | None
# The codes a case command's text arguments may take (reason codes, causes): a closed vocabulary,
# so that no free word travels. The lifecycle's reason enums are a subset (a test keeps it so).
ARG_CODES: frozenset[str] = frozenset({
    "no_capacity", "clinical_criteria", "other", "too_far", "date_unsuitable", "chose_home_region",
    "found_slot_in_home_region", "care_no_longer_needed", "entered_in_error", "duplicate",
    "patient_deceased", "operator_decision", "provider", "patient", "as_expected", "complication",
})
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ][0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?")
_AMOUNT = re.compile(r"-?\d{1,9}(?:\.\d{1,2})?")  # money as an exact decimal string: no room for a personnummer
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def check_arg_text(value: str) -> None:
    """A text argument of a case command is a code of `ARG_CODES`, an amount (at most 9 digits and
    2 decimals), an ISO date or time, a UUID (match and referral ids) or a bus id (invoice ids,
    payment references)."""
    if value in ARG_CODES or _AMOUNT.fullmatch(value):
        return
    if _ISO_DATE.fullmatch(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("arg_date", "a date argument is an ISO 8601 date") from None
        return
    if _UUID.fullmatch(value):
        try:
            check_event_id(uuid.UUID(value))
        except IdentifierError as exc:
            raise PydanticCustomError(exc.rule, str(exc)) from None
        return
    try:
        check_identifier(value)
    except IdentifierError as exc:
        raise PydanticCustomError("arg_shape", "a text argument is a known code, an ISO date, a UUID or an id "
                                  "({rule})", {"rule": exc.rule}) from None


class CaseStateChanged(Payload):
    """One event of a case's lifecycle, for everyone who follows cases (notifier, operators).

    `event_type` is the lifecycle event (e.g. `case.match_held`, `case.hold_released`); `from_state`
    equals `to_state` for events that change no state (a warning, a released hold). `details` are
    ids, codes and amounts only: never anything that identifies a patient.
    """

    TYPE = "case.state_changed"
    case_ref: Identifier
    from_state: str | None
    to_state: str
    reason: str = ""
    version: int = Field(ge=1)
    event_type: str = ""
    details: dict[str, Detail] = Field(default_factory=dict)


CaseCommandName = Literal[
    "accept_match", "decline_match", "offer_to_patient", "record_patient_answer", "acknowledge_referral",
    "schedule", "record_performed", "record_follow_up", "invoice", "record_payment", "close", "withdraw",
    "cancel", "expire_hold", "expire_case", "escalate_referral", "warn_guarantee",
]


class CaseCommandIssued(Payload):
    """A party asks a case to move on: the provider accepts, the home region records the patient's
    answer, the sweeper expires a hold. `args` are the command's own fields (match_id, reason_code,
    accepted, scheduled_for, performed_on, invoice_id, payment_ref, amount_sek, note, ...)."""

    TYPE = "case.command"
    case_ref: BusId
    command: CaseCommandName
    args: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")], Detail] = Field(default_factory=dict,
                                                                                 max_length=MAX_ARGS)

    @field_validator("args")
    @classmethod
    def _no_free_text(cls, args: dict[str, Detail]) -> dict[str, Detail]:
        # Free text could carry anything; a note for the counterpart goes in a secure message.
        for key, value in args.items():
            if key == "note":
                raise PydanticCustomError("no_free_text", "notes do not travel on the bus: send them in a "
                                          "secure message to the counterpart")
            if isinstance(value, str):
                check_arg_text(value)
            elif isinstance(value, float | int) and not isinstance(value, bool) and not (
                    -MAX_PRICE_SEK <= value <= MAX_PRICE_SEK):
                raise PydanticCustomError("amount_range", "a number in args lies between {low} and {high}",
                                          {"low": -MAX_PRICE_SEK, "high": MAX_PRICE_SEK})
        return args


class MessageSent(Payload):
    """A party of a case was told something (a notification or a secure message)."""

    TYPE = "message.sent"
    message_id: Identifier
    case_ref: Identifier
    message_type: str
    sender: str
    recipient: str
    recipient_address: str = ""


class ReceiptReceived(Payload):
    TYPE = "receipt.received"
    message_id: Identifier
    case_ref: Identifier
    status: Literal["ACCEPTED", "REJECTED"]
    code: str | None = None
    detail: str | None = None


class EventRejected(Payload):
    """Told to the sender of bad input: which field broke which rule. Nothing of it was stored."""

    TYPE = "event.rejected"
    rejected_event_id: str | None
    rejected_type: str | None
    producer: str | None
    field: str
    rule: str
    message: str



# --- secure messages (SDK style) -------------------------------------------------------------
# The marketplace routes sealed messages and signed receipts between organisations. What it can
# read is their readable header (ids, organisations, functional addresses, type); the body is
# encrypted for the recipient organisation alone. Bytes travel as standard base64.

SealedBase64 = Annotated[str, Field(min_length=4, max_length=40_000_004, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]
"""A sealed message's canonical wire form in base64 (SDK's 30 MB limit, plus base64's third)."""
ReceiptBase64 = Annotated[str, Field(min_length=4, max_length=90_000, pattern=r"^[A-Za-z0-9+/]*={0,2}$")]


class SecureMessageSubmitted(Payload):
    """A party's own system hands a sealed message to the marketplace for delivery.

    `case_ref` names the case the message belongs to; it must equal the header's conversation id,
    which is how the recipient, who can read the body, checks that the two agree.
    """

    TYPE = "sdk.message.submitted"
    case_ref: BusId
    sealed: SealedBase64


class SecureMessageDelivered(Payload):
    """A sealed message, in its recipient organisation's inbox."""

    TYPE = "sdk.message.delivered"
    message_id: Identifier
    case_ref: Identifier
    sealed: SealedBase64


class SecureReceiptSubmitted(Payload):
    """A recipient returns its signed business receipt for a message it was delivered."""

    TYPE = "sdk.receipt.submitted"
    receipt: ReceiptBase64


class SecureReceiptDelivered(Payload):
    """A signed receipt, in the inbox of the organisation whose message it answers (or a REJECTED
    receipt signed by the marketplace, for a submission it refused to route)."""

    TYPE = "sdk.receipt.delivered"
    message_id: Identifier | None
    receipt: ReceiptBase64


class MessageEscalated(Payload):
    """A secure message needs a person: no receipt by its deadline, or it could not be handed over."""

    TYPE = "message.escalated"
    message_id: Identifier
    case_ref: Identifier
    message_type: str
    recipient: str
    reason: Literal["no_receipt", "undeliverable"]
    attempts: int = Field(ge=0)

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        OfferPublished,
        OfferWithdrawn,
        RequestPublished,
        RequestWithdrawn,
        AgreementDrafted,
        AgreementRegistered,
        AgreementUpdated,
        AgreementEnded,
        ClearingRoundRequested,
        ClearingRoundCompleted,
        MatchProposed,
        PatientNotPlaced,
        CaseStateChanged,
        CaseCommandIssued,
        MessageSent,
        ReceiptReceived,
        EventRejected,
        SecureMessageSubmitted,
        SecureMessageDelivered,
        SecureReceiptSubmitted,
        SecureReceiptDelivered,
        MessageEscalated,
    )
}
