"""Tables of the waiting-time lägesbild and the units' free-capacity feed.

Created with the others by `Database.create_all` (registered in `marketplace/adapters/database.py`).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from marketplace.adapters.orm import utcnow

_TZ = DateTime(timezone=True)


class WaitFiguresRow(SQLModel, table=True):
    """The current figures of one cell: month, region, care area and status."""

    __tablename__ = "waiting_times"
    period: str = Field(primary_key=True, max_length=7)
    region: str = Field(primary_key=True, max_length=2)
    care_area: str = Field(primary_key=True, max_length=64)
    status: str = Field(primary_key=True, max_length=16)
    suppressed: bool
    count: int | None = None
    days_0_30: int | None = None
    days_31_60: int | None = None
    days_61_90: int | None = None
    days_91_120: int | None = None
    days_121_180: int | None = None
    days_181_365: int | None = None
    days_366_plus: int | None = None
    share_within_90: float | None = None
    median_days: float | None = None
    mean_days: float | None = None
    version: int = 1
    source: str = Field(max_length=200, description="the file the current version came from")
    imported_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class WaitFiguresVersionRow(SQLModel, table=True):
    """Every version a cell has had, first import included: the cell's history of corrections."""

    __tablename__ = "waiting_time_versions"
    __table_args__ = (UniqueConstraint("period", "region", "care_area", "status", "version",
                                       name="uq_waiting_time_version"),)
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    period: str = Field(max_length=7)
    region: str = Field(max_length=2)
    care_area: str = Field(max_length=64)
    status: str = Field(max_length=16)
    version: int
    figures: dict[str, object] = Field(sa_column=Column(JSON, nullable=False))
    source: str = Field(max_length=200)
    line: int
    imported_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class UnitCapacityRow(SQLModel, table=True):
    """A unit's free capacity for one care area, as its open offers on the marketplace show it.

    Projected from the offers (services/capacity.py): `windows` are the unit's open offers with
    places left when the projection last ran; `updated_on` is the day of the event it last ran on,
    which is what the report's staleness counts from. The wait band and the yes/no are worked out
    from the windows on the day they are read (waiting_times/capacity.py).
    """

    __tablename__ = "unit_capacity"
    unit_hsa_id: str = Field(primary_key=True, max_length=128)
    care_area: str = Field(primary_key=True, max_length=64)
    region: str = Field(max_length=2, index=True)
    windows: list[dict[str, object]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_on: date
    source_event_id: str = Field(max_length=36)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)
