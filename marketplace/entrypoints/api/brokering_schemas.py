"""What the brokering reads give: provider search, care agreements with their versions, waiting
times per region and the units' free-capacity feed. Mapped from the services' own results, so the
API shows what `nvf agreements search`, `nvf agreements show`, `nvf waits` and `nvf capacity` show."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from events import Contact
from marketplace.adapters.orm import AgreementRow, AgreementVersionRow
from marketplace.adapters.search_index import AreaMatch
from marketplace.adapters.waits_orm import UnitCapacityRow
from marketplace.entrypoints.api.schemas import Out
from marketplace.services.agreements import to_domain
from marketplace.services.provider_search import ProviderHit
from marketplace.waiting_times.capacity import UnitReport
from marketplace.waiting_times.figures import BUCKETS, Period, RegionView, WaitFigures, stale_from
from matchers.reference import care_areas, regions

# --- provider search ----------------------------------------------------------------------------


class CareAreaMatchOut(BaseModel):
    care_area: str
    name: str = Field(description="the care area's Swedish name")
    matched_term: str = Field(description="the vocabulary term the words were taken for")
    exact: bool = Field(description="the words themselves were found (not only a near spelling)")

    @classmethod
    def of(cls, m: AreaMatch) -> CareAreaMatchOut:
        return cls(care_area=m.care_area, name=care_areas()[m.care_area].name_sv, matched_term=m.term, exact=m.exact)


class ProviderOut(BaseModel):
    """One performing unit for one care area, with the agreement shown for it and its contacts."""

    rank: int = Field(description="1 for the best match")
    care_area: str
    care_area_name: str
    matched_term: str
    exact: bool
    agreement_id: str = Field(description="the agreement with the caller's region when there is one")
    provider: str = Field(description="the providing region")
    provider_name: str
    unit_hsa_id: str | None
    unit_name: str
    unit_contact: Contact | None
    region_contact: Contact | None = Field(description="the contracting region's contact")
    valid_from: date | None
    valid_to: date | None
    price_sek: float | None
    price_terms: str
    with_my_region: bool = Field(description="the unit has an agreement in force with the caller's region")
    purchasers: list[str] = Field(description="the regions with an agreement with this unit for this area")

    @classmethod
    def of(cls, rank: int, h: ProviderHit) -> ProviderOut:
        return cls(rank=rank, care_area=h.care_area, care_area_name=h.care_area_name, matched_term=h.matched_term,
                   exact=h.exact, agreement_id=h.agreement_id, provider=h.provider, provider_name=h.provider_name,
                   unit_hsa_id=h.unit_hsa_id, unit_name=h.unit_name, unit_contact=h.unit_contact,
                   region_contact=h.region_contact, valid_from=h.valid_from, valid_to=h.valid_to,
                   price_sek=h.price_sek, price_terms=h.price_terms, with_my_region=h.with_my_region,
                   purchasers=list(h.purchasers))


class ProviderSearchOut(BaseModel):
    q: str
    region: str | None = Field(description="the caller's region, from its token")
    has_agreement: bool
    as_of: date
    care_areas: list[CareAreaMatchOut] = Field(description="what the words were taken for, best first")
    items: list[ProviderOut]


# --- agreements ---------------------------------------------------------------------------------


class AgreementOut(Out):
    agreement_id: str
    status: str = Field(description="draft, registered or ended")
    version: int
    purchaser: str = Field(description="the purchasing region")
    provider: str = Field(description="the providing region")
    care_areas: list[str]
    unit_hsa_id: str | None
    unit_name: str | None
    valid_from: date | None
    valid_to: date | None
    ended_on: date | None
    price_sek: float | None
    price_terms: str
    unit_contact: Contact | None
    region_contact: Contact | None
    updated_at: datetime

    @classmethod
    def of(cls, row: AgreementRow) -> AgreementOut:
        a = to_domain(row)
        t = a.terms
        return cls(agreement_id=a.agreement_id, status=a.status.value, version=a.version, purchaser=a.purchaser,
                   provider=a.provider, care_areas=list(a.care_areas), unit_hsa_id=t.unit_hsa_id if t else None,
                   unit_name=t.unit_name if t else None, valid_from=a.valid_from, valid_to=a.valid_to,
                   ended_on=a.ended_on, price_sek=t.price_sek if t else None, price_terms=t.price_terms if t else "",
                   unit_contact=t.unit_contact if t else None, region_contact=t.region_contact if t else None,
                   updated_at=row.updated_at)


class AgreementVersionOut(Out):
    version: int
    event_type: str
    status: str
    producer: str = Field(description="the region that made the change, as its channel said")
    occurred_at: datetime
    event_id: str
    ended_on: date | None
    reason: str
    terms: dict[str, Any] | None = Field(description="the terms as of this version")

    @classmethod
    def of(cls, row: AgreementVersionRow) -> AgreementVersionOut:
        return cls.model_validate(row)


class AgreementDetailOut(AgreementOut):
    versions: list[AgreementVersionOut] = Field(description="the timeline of its versions, oldest first")


# --- waiting times ------------------------------------------------------------------------------


class WaitFiguresOut(BaseModel):
    """One month's cell; a suppressed cell (fewer than 5 patients) carries no figures."""

    status: str = Field(description="waiting (on the month's last day) or completed (operated in the month)")
    suppressed: bool
    count: int | None
    buckets: dict[str, int] | None = Field(description="patients by days waited: 0-30 ... 366+")
    share_within_90: float | None
    median_days: float | None
    mean_days: float | None = Field(description="completed only")

    @classmethod
    def of(cls, f: WaitFigures | None) -> WaitFiguresOut | None:
        if f is None:
            return None
        return cls(status=f.status.value, suppressed=f.suppressed, count=f.count,
                   buckets=dict(zip(BUCKETS, f.buckets, strict=True)) if f.buckets is not None else None,
                   share_within_90=f.share_within_90, median_days=f.median_days, mean_days=f.mean_days)


class TrendPointOut(BaseModel):
    period: str
    share_within_90: float | None = Field(description="of the waiting; null where missing or suppressed")


class RegionWaitsOut(BaseModel):
    region: str
    region_name: str
    has_data: bool
    newest: str | None = Field(description="the newest month shown (YYYY-MM)")
    stale: bool = Field(description="the region's newest figures are more than 6 weeks past their due date")
    stale_from: date | None = Field(description="the day the region's newest figures turn (or turned) stale; "
                                                "null when a month is asked for")
    waiting: WaitFiguresOut | None
    completed: WaitFiguresOut | None
    trend: list[TrendPointOut] = Field(description="the 13 months up to the newest, oldest first")

    @classmethod
    def of(cls, v: RegionView, newest_sent: Period | None) -> RegionWaitsOut:
        trend = []
        if v.newest is not None:
            months = [v.newest.plus(i - len(v.trend) + 1) for i in range(len(v.trend))]
            trend = [TrendPointOut(period=str(m), share_within_90=s) for m, s in zip(months, v.trend, strict=True)]
        return cls(region=v.region, region_name=regions()[v.region].name, has_data=v.has_data,
                   newest=str(v.newest) if v.newest else None, stale=v.stale,
                   stale_from=stale_from(newest_sent) if newest_sent else None,
                   waiting=WaitFiguresOut.of(v.waiting), completed=WaitFiguresOut.of(v.completed), trend=trend)


class WaitingTimesOut(BaseModel):
    care_area: str
    care_area_name: str
    today: date = Field(description="the day staleness is judged on")
    period: str | None = Field(description="the month asked for; null: each region's newest")
    items: list[RegionWaitsOut]


# --- free capacity ------------------------------------------------------------------------------


class WaitBandOut(BaseModel):
    min_weeks: int
    max_weeks: int
    label: str = Field(description='as the feed prints it: "9 - 13 veckor"')


class UnitCapacityOut(BaseModel):
    unit_hsa_id: str
    region: str
    region_name: str
    care_area: str
    free_capacity: bool
    wait_band: WaitBandOut | None = Field(description="the estimated wait for a new patient, in weeks")
    places: int = Field(description="places left in the unit's open offers")
    updated_on: date
    stale: bool = Field(description="not updated for more than 6 weeks")

    @classmethod
    def of(cls, row: UnitCapacityRow, rep: UnitReport) -> UnitCapacityOut:
        band = rep.band
        return cls(unit_hsa_id=row.unit_hsa_id, region=row.region, region_name=regions()[row.region].name,
                   care_area=row.care_area, free_capacity=rep.free_capacity,
                   wait_band=WaitBandOut(min_weeks=band.min_weeks, max_weeks=band.max_weeks, label=str(band))
                   if band else None, places=rep.places, updated_on=rep.updated_on, stale=rep.stale)


class CapacityOut(BaseModel):
    today: date
    care_area: str | None
    region: str | None
    items: list[UnitCapacityOut]
