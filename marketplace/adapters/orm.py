"""SQLModel tables: the marketplace's state, its outbox, its inbox, the cases' event streams and
their annotations."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class OfferRow(SQLModel, table=True):
    __tablename__ = "offers"
    offer_id: str = Field(primary_key=True, max_length=128)
    region: str = Field(max_length=2, index=True)
    unit_hsa_id: str = Field(max_length=128)
    care_area: str = Field(max_length=64, index=True)
    capacity: int
    remaining: int
    window_start: date
    window_end: date
    price_sek: float
    status: str = Field(default="open", max_length=16)
    event_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class RequestRow(SQLModel, table=True):
    __tablename__ = "requests"
    request_id: str = Field(primary_key=True, max_length=128)
    region: str = Field(max_length=2, index=True)
    care_area: str = Field(max_length=64, index=True)
    window_start: date
    window_end: date
    max_price_sek: float | None = None
    max_travel_km: float | None = None
    excluded_regions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    requires_agreement: bool = False
    status: str = Field(default="open", max_length=16)
    event_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class AgreementRow(SQLModel, table=True):
    """A care agreement (vårdavtal) as it stands now; its history is in `care_agreement_versions`.
    `terms` is the payload's AgreementTerms as JSON (none for the original triple form)."""

    __tablename__ = "care_agreements"
    agreement_id: str = Field(primary_key=True, max_length=128)
    purchaser: str = Field(max_length=2, index=True)
    provider: str = Field(max_length=2, index=True)
    status: str = Field(max_length=16, index=True)
    version: int
    care_areas: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    unit_hsa_id: str | None = Field(default=None, max_length=64, index=True)
    unit_name: str | None = Field(default=None, max_length=200)
    valid_from: date | None = None
    valid_to: date | None = None
    ended_on: date | None = None
    price_sek: float | None = None
    terms: dict[str, object] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class AgreementAreaRow(SQLModel, table=True):
    """Which care areas an agreement covers: what the matcher and the search select by."""

    __tablename__ = "care_agreement_areas"
    agreement_id: str = Field(primary_key=True, max_length=128)
    care_area: str = Field(primary_key=True, max_length=64, index=True)


class AgreementVersionRow(SQLModel, table=True):
    """One version of an agreement, appended by every change: its timeline."""

    __tablename__ = "care_agreement_versions"
    agreement_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    event_type: str = Field(max_length=64)
    status: str = Field(max_length=16)
    event_id: str = Field(max_length=36)
    producer: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    ended_on: date | None = None
    reason: str = Field(default="", max_length=500)
    terms: dict[str, object] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class CareAreaTermRow(SQLModel, table=True):
    """The search vocabulary as the databases' full-text search reads it (filled from the shipped
    `marketplace/agreements/vocabulary.csv` by `marketplace.adapters.search_index`)."""

    __tablename__ = "care_area_terms"
    id: int = Field(primary_key=True)
    care_area: str = Field(max_length=64, index=True)
    term: str = Field(max_length=200)
    kind: str = Field(max_length=16)


class CaseRow(SQLModel, table=True):
    """One patient's brokering case (vårdförmedlingsärende), by pseudonymous reference only."""

    __tablename__ = "cases"
    case_ref: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(max_length=128, index=True)
    region: str = Field(max_length=2, index=True)
    care_area: str = Field(max_length=64, index=True)
    waiting_since: date
    state: str = Field(max_length=32, index=True)
    version: int = 0
    excluded_offers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    current_match_id: str | None = Field(default=None, max_length=64)
    last_reason: str | None = Field(default=None, max_length=64)
    guarantee_date: date | None = None
    # When the sweeper must next look at this case (a hold expiring, a warning falling due).
    next_deadline_at: datetime | None = Field(default=None, index=True,
                                              sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ClearingRoundRow(SQLModel, table=True):
    __tablename__ = "clearing_rounds"
    round_id: str = Field(primary_key=True, max_length=128)
    care_area: str = Field(max_length=64, index=True)
    as_of: date
    policy: str = Field(max_length=16)
    patients: int
    placed: int
    wait_days: int
    cost_sek: float
    seconds: float
    completed_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class PlacementRow(SQLModel, table=True):
    """Every patient's outcome of one clearing round: the allocation as the matcher decided it."""

    __tablename__ = "placements"
    round_id: str = Field(primary_key=True, max_length=128)
    case_ref: str = Field(primary_key=True, max_length=128)
    request_id: str = Field(max_length=128)
    offer_id: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=32)
    cost_sek: float | None = None
    distance_km: float | None = None
    wait_days: int = 0


class MatchRow(SQLModel, table=True):
    """A proposed match: a hold on one slot of an offer."""

    __tablename__ = "matches"
    match_id: str = Field(primary_key=True, max_length=64)
    round_id: str = Field(max_length=128, index=True)
    case_ref: str = Field(max_length=128, index=True)
    request_id: str = Field(max_length=128)
    offer_id: str = Field(max_length=128, index=True)
    care_area: str = Field(max_length=64)
    requesting_region: str = Field(max_length=2)
    providing_region: str = Field(max_length=2)
    unit_hsa_id: str = Field(max_length=128)
    price_sek: float
    ancillary_cost_sek: float
    distance_km: float
    wait_days: int
    status: str = Field(default="proposed", max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class NotificationRow(SQLModel, table=True):
    """That a party of a case was told something."""

    __tablename__ = "notifications"
    message_id: str = Field(primary_key=True, max_length=64)
    case_ref: str = Field(max_length=128, index=True)
    party: str = Field(max_length=32)
    role: str = Field(max_length=16)
    message_type: str = Field(max_length=32)
    about_event_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class CaseEventRow(SQLModel, table=True):
    """A case's own event stream: its lifecycle events, hash-chained; `version` is the aggregate's
    version after the event, so (case_ref, version) is unique and a concurrent append fails."""

    __tablename__ = "case_events"
    __table_args__ = (
        UniqueConstraint("case_ref", "version", name="uq_case_events_case_version"),
        UniqueConstraint("case_ref", "event_id", name="uq_case_events_case_event"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    case_ref: str = Field(max_length=128, index=True)
    version: int
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    payload: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class CaseAnnotationRow(SQLModel, table=True):
    """What the bus said about a case (a message sent, a receipt...), projected beside its event
    stream by the timeline worker: a chain of its own per case (`position` in it), the bus event's
    id unique so that a redelivery adds nothing."""

    __tablename__ = "case_annotations"
    __table_args__ = (
        UniqueConstraint("case_ref", "position", name="uq_case_annotations_case_position"),
        UniqueConstraint("event_id", name="uq_case_annotations_event"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    case_ref: str = Field(max_length=128, index=True)
    position: int
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=64)
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    payload: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class ChainHeadRow(SQLModel, table=True):
    """Each chain's head (a case's event stream, its annotations), kept outside the chain, with the
    marketplace's keyed checkpoint of it: a deleted newest entry, a forged append or a recomputed
    chain no longer meets it."""

    __tablename__ = "chain_heads"
    case_ref: str = Field(primary_key=True, max_length=128)
    chain: str = Field(primary_key=True, max_length=16)
    version: int
    hash: str = Field(max_length=64)
    checkpoint: str | None = Field(default=None, max_length=64)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ProcessedEventRow(SQLModel, table=True):
    """The inbox: an event id recorded in the same transaction as its effect, per consumer group."""

    __tablename__ = "processed_events"
    consumer: str = Field(primary_key=True, max_length=32)
    event_id: str = Field(primary_key=True, max_length=36)
    # SHA-256 of the event's canonical JSON (RFC 8785): the same id with other content is a conflict.
    digest: str | None = Field(default=None, max_length=64)
    processed_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class OutboxRow(SQLModel, table=True):
    """Events to publish, written in the same transaction as the state that caused them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    event_id: str = Field(max_length=36, unique=True)
    stream: str = Field(max_length=200)
    # The role that staged it: each role's relay publishes only its own rows, as its own Redis user.
    producer: str | None = Field(default=None, max_length=64)
    body: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    published_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class RejectionRow(SQLModel, table=True):
    """Bad input from a region: what was wrong, recorded; nothing of the input itself was stored."""

    __tablename__ = "rejections"
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    event_id: str | None = Field(default=None, max_length=64)
    producer: str | None = Field(default=None, max_length=64)
    event_type: str | None = Field(default=None, max_length=64)
    # The stream it arrived on, which names its real sender (events/parties.py).
    stream: str | None = Field(default=None, max_length=200)
    field: str = Field(max_length=200)
    rule: str = Field(max_length=64)
    message: str
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class PartitionLeaseRow(SQLModel, table=True):
    """The highest fencing token that has written to a book partition: a stale lock holder's
    transaction (a lower token) is refused, so a partition has one writer even across a pause."""

    __tablename__ = "partition_leases"
    partition: str = Field(primary_key=True, max_length=200)
    token: int = Field(sa_type=BigInteger)
    holder: str = Field(max_length=200)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
