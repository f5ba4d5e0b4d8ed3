"""What the region API takes and gives: its own models, mapped onto the bus's payloads.

A body never names who the caller is: the region comes from the token. Bounds are the bus's
(ids up to 128 characters, amounts the store can hold), so what passes here also passes intake.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.payloads import CareArea, Identifier, OfferWithdrawalReason, RegionCode, RequestWithdrawalReason
from marketplace.lifecycle.reasons import PatientDeclineReason, ProviderDeclineReason, WithdrawalReason

T = TypeVar("T")
# Reason codes, not words: no free text travels on the bus (the README's "What the bus accepts").
CancelReason = Literal["entered_in_error", "duplicate", "patient_deceased", "operator_decision", "other"]
Sek = Annotated[float, Field(ge=0, le=100_000_000)]
Km = Annotated[float, Field(ge=0, le=5_000)]
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2100, 12, 31))]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- writes -------------------------------------------------------------------------------------


class OfferIn(Body):
    """Capacity the caller's region offers."""

    offer_id: Identifier
    unit_hsa_id: Identifier
    care_area: CareArea
    capacity: int = Field(gt=0, le=100_000)
    window_start: Day
    window_end: Day
    price_sek: Sek


class PatientIn(Body):
    case_ref: Identifier = Field(description="pseudonymous reference; never a personnummer or a name")
    waiting_since: Day


class RequestIn(Body):
    """Care the caller's region asks for, for patients by pseudonymous reference."""

    request_id: Identifier
    care_area: CareArea
    window_start: Day
    window_end: Day
    max_price_sek: Sek | None = None
    max_travel_km: Km | None = None
    excluded_regions: list[RegionCode] = Field(default_factory=list, max_length=21)
    requires_agreement: bool = False
    patients: list[PatientIn] = Field(min_length=1, max_length=1_000)


class OfferWithdrawalIn(Body):
    reason_code: OfferWithdrawalReason = "other"


class RequestWithdrawalIn(Body):
    case_refs: list[Identifier] | None = Field(default=None, max_length=1_000,
                                               description="only these cases; unset: the whole request")
    reason_code: RequestWithdrawalReason = "other"


class Empty(Body):
    pass


class DeclineIn(Body):
    reason_code: ProviderDeclineReason


class PatientAnswerIn(Body):
    accepted: bool
    reason_code: PatientDeclineReason | None = Field(default=None, description="required when declined")


class ScheduleIn(Body):
    scheduled_for: Day


class PerformedIn(Body):
    performed_on: Day


class FollowUpIn(Body):
    """No free text travels on the bus: what the follow-up found goes to the counterpart in a secure
    message (`FollowUp`), not in this command."""


class InvoiceIn(Body):
    invoice_id: Identifier


class PaymentIn(Body):
    payment_ref: Identifier
    amount_sek: Decimal = Field(gt=0, le=100_000_000, max_digits=12, decimal_places=2)


class WithdrawIn(Body):
    reason: WithdrawalReason


class CancelIn(Body):
    reason: CancelReason


# --- reads --------------------------------------------------------------------------------------


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # SQLite gives back naive datetimes for what was stored as UTC.
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


class OfferOut(Out):
    offer_id: str
    region: str
    unit_hsa_id: str
    care_area: str
    capacity: int
    remaining: int
    window_start: date
    window_end: date
    price_sek: float
    status: str
    created_at: datetime


class RequestOut(Out):
    request_id: str
    region: str
    care_area: str
    window_start: date
    window_end: date
    max_price_sek: float | None
    max_travel_km: float | None
    excluded_regions: list[str]
    requires_agreement: bool
    status: str
    created_at: datetime


class MatchOut(Out):
    match_id: str
    round_id: str
    case_ref: str
    request_id: str
    offer_id: str
    care_area: str
    requesting_region: str
    providing_region: str
    unit_hsa_id: str
    price_sek: float
    ancillary_cost_sek: float
    distance_km: float
    wait_days: int
    status: str
    created_at: datetime


class CaseOut(Out):
    case_ref: str
    request_id: str
    region: str = Field(description="the home region")
    care_area: str
    waiting_since: date
    state: str
    version: int
    current_match_id: str | None
    guarantee_date: date | None
    updated_at: datetime


class TimelineEntryOut(BaseModel):
    kind: Literal["event", "annotation"] = Field(
        description="event: a lifecycle event of the case's own stream (its version is the case's version "
                    "after it); annotation: what the bus said about the case, a projection beside the stream")
    version: int = Field(description="the entry's place in its chain (the case's stream, or its annotations)")
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class TimelineOut(BaseModel):
    case_ref: str
    version: int
    verified: bool = Field(description="both hash chains (the case's event stream and its annotations) check out")
    chains: dict[str, bool] = Field(default_factory=dict,
                                    description="each chain ('events', 'annotations') and whether it checks out")
    entries: list[TimelineEntryOut]


class MessageOut(Out):
    """A secure message's readable header and delivery state; the body stays sealed for its recipient."""

    message_id: str
    case_ref: str
    message_type: str
    sender_org: str
    recipient_org: str
    in_reply_to: str | None
    status: str
    receipt_status: str | None
    created_at: datetime


class SealedMessageOut(MessageOut):
    sealed: str | None = Field(default=None, description="the sealed wire form (base64), for its recipient only")


class AllowedAction(BaseModel):
    action: str
    command: str
    method: str = "POST"
    href: str


class AllowedActionsOut(BaseModel):
    case_ref: str
    state: str
    version: int
    actions: list[AllowedAction]


class Page(BaseModel, Generic[T]):
    items: list[T]
    limit: int
    offset: int
    next_offset: int | None


class Accepted(BaseModel):
    """A write intake has not decided within the wait: published, the verdict still to come."""

    event_id: str
    status: str = "queued"
    detail: str


class ClearingRoundIn(Body):
    """The operator asks one care area's matcher to clear its book as of a day."""

    round_id: Identifier
    care_area: CareArea
    as_of: Day
    policy: Literal["optimal", "greedy"] = "optimal"


class ClearingRoundOut(Out):
    round_id: str
    care_area: str
    as_of: date
    policy: str
    patients: int
    placed: int
    wait_days: int
    cost_sek: float
    completed_at: datetime
