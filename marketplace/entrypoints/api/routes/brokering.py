"""The brokering service's reads: `/v1/providers` (the care navigators' search), `/v1/agreements`
(care agreements and their versions), `/v1/waiting-times` (the lägesbild per region) and
`/v1/capacity` (the units' free-capacity feed).

Each is the service the CLI uses (`nvf agreements search/list/show`, `nvf waits`, `nvf capacity`),
called with the caller's region from its token: the search's "my region" is never a parameter.
Waiting times and the capacity feed are public aggregates: any authenticated caller reads them.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlmodel import col, select

from events.payloads import CareArea, RegionCode
from marketplace.adapters.orm import AgreementAreaRow, AgreementRow, AgreementVersionRow
from marketplace.adapters.search_index import MAX_QUERY, SearchQueryError, SearchUnavailable
from marketplace.entrypoints.api.brokering_schemas import (
    AgreementDetailOut,
    AgreementOut,
    AgreementVersionOut,
    CapacityOut,
    CareAreaMatchOut,
    ProviderOut,
    ProviderSearchOut,
    RegionWaitsOut,
    UnitCapacityOut,
    WaitingTimesOut,
)
from marketplace.entrypoints.api.deps import State, Who
from marketplace.entrypoints.api.problems import Problem, invalid, not_found
from marketplace.entrypoints.api.routes.common import Limit, Offset, Ref, page, read_response
from marketplace.entrypoints.api.schemas import Day, Page
from marketplace.entrypoints.api.tokens import Caller
from marketplace.services import capacity, waiting_times
from marketplace.services.provider_search import SearchQuery, search_providers
from marketplace.waiting_times.figures import Period
from matchers.reference import care_areas, regions

router = APIRouter(prefix="/v1")

# Words as a navigator types them: no control characters (PostgreSQL refuses NUL in text).
Words = Annotated[str, Query(max_length=MAX_QUERY, pattern=r"^[^\x00-\x1f\x7f]*$",
                             description='what the patient needs, in plain Swedish: "grå starr", "knäprotes"')]
Unit = Annotated[str | None, Query(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                                   description="a unit's HSA-id, or part of its name")]
RegionParam = Annotated[RegionCode | None, Query(description="a two-digit region code")]
AreaParam = Annotated[CareArea | None, Query(description="a care area code, e.g. cataract")]
DayParam = Annotated[Day | None, Query(description="YYYY-MM-DD; default today")]
Month = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="a month, YYYY-MM")]
_API_FIELD = {"text": "q", "region": "region", "my_region": "region"}


def _known_area(name: str, code: str | None) -> None:
    if code is not None and code not in care_areas():
        raise invalid(name, "known_care_area", f"unknown care area {code!r}; known: {', '.join(care_areas())}")


def _known_region(name: str, code: str | None) -> None:
    if code is not None and code not in regions():
        raise invalid(name, "known_region", f"unknown region code {code!r}")


# --- provider search ----------------------------------------------------------------------------


@router.get("/providers", response_model=ProviderSearchOut, tags=["providers"],
            responses={422: {"description": "a bad parameter: the field and the rule"},
                       503: {"description": "the database cannot run the search"}},
            summary="Care navigators' search: performing units by care area in plain words, ranked, with contacts")
async def search(request: Request, st: State, who: Who, q: Words = "",
                 has_agreement: Annotated[bool, Query(description="only units with an agreement in force with "
                                                                  "the caller's region")] = False,
                 provider_region: RegionParam = None, unit: Unit = None, as_of: DayParam = None,
                 limit: Annotated[int, Query(ge=1, le=500, description="at most this many units")] = 100) -> Response:
    _known_region("provider_region", provider_region)
    if has_agreement and who.region is None:
        raise invalid("has_agreement", "needs_region", "only a region's caller has agreements to filter by")
    query = SearchQuery(text=q, my_region=who.region, provider_region=provider_region, unit=unit,
                        has_agreement=has_agreement, as_of=as_of or date.today(), limit=limit)
    try:
        async with st.db.session() as session:
            result = await search_providers(session, query)
    except SearchQueryError as exc:
        raise invalid(_API_FIELD.get(exc.field, exc.field), exc.rule, exc.message) from None
    except SearchUnavailable as exc:
        raise Problem(503, "search-unavailable", str(exc)) from None
    return read_response(request, ProviderSearchOut(
        q=q, region=who.region, has_agreement=has_agreement, as_of=query.as_of,
        care_areas=[CareAreaMatchOut.of(m) for m in result.areas],
        items=[ProviderOut.of(i, h) for i, h in enumerate(result.hits, 1)]))


# --- agreements ---------------------------------------------------------------------------------


def _party(who: Caller, row: AgreementRow) -> bool:
    return who.is_operator or who.region in (row.purchaser, row.provider)


@router.get("/agreements", response_model=Page[AgreementOut], tags=["agreements"],
            summary="Care agreements the caller's region buys or provides under (the operator: all)")
async def list_agreements(request: Request, st: State, who: Who,
                          status: Annotated[Literal["draft", "registered", "ended"] | None, Query()] = None,
                          care_area: AreaParam = None, limit: Limit = 100, offset: Offset = 0) -> Response:
    query = select(AgreementRow)
    if not who.is_operator:
        query = query.where((col(AgreementRow.purchaser) == who.region) | (col(AgreementRow.provider) == who.region))
    if status is not None:
        query = query.where(AgreementRow.status == status)
    if care_area is not None:
        covering = select(AgreementAreaRow.agreement_id).where(AgreementAreaRow.care_area == care_area)
        query = query.where(col(AgreementRow.agreement_id).in_(covering))
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(AgreementRow.agreement_id)).offset(offset)
                                   .limit(limit + 1))).all()
    return read_response(request, page([AgreementOut.of(r) for r in rows[:limit]], limit, offset, len(rows) > limit))


@router.get("/agreements/{agreement_id}", response_model=AgreementDetailOut, tags=["agreements"],
            responses={404: {"description": "no such agreement, or one the caller is no party to"}},
            summary="One agreement, its terms and contacts, and the timeline of its versions")
async def get_agreement(request: Request, st: State, who: Who, agreement_id: Ref) -> Response:
    async with st.db.session() as session:
        row = await session.get(AgreementRow, agreement_id)
        if row is None or not _party(who, row):
            raise not_found("agreement " + agreement_id)
        versions = (await session.exec(select(AgreementVersionRow).where(
            AgreementVersionRow.agreement_id == agreement_id).order_by(col(AgreementVersionRow.version)))).all()
    out = AgreementDetailOut(**AgreementOut.of(row).model_dump(),
                             versions=[AgreementVersionOut.of(v) for v in versions])
    return read_response(request, out)


# --- waiting times and capacity -----------------------------------------------------------------


@router.get("/waiting-times", response_model=WaitingTimesOut, tags=["waiting-times"],
            summary="Waiting times per region (lägesbild): the newest month, the 13-month trend, stale flags")
async def get_waiting_times(request: Request, st: State, who: Who,
                            care_area: Annotated[CareArea, Query(description="e.g. cataract")] = "cataract",
                            region: RegionParam = None, period: Month = None, today: DayParam = None) -> Response:
    _known_area("care_area", care_area)
    _known_region("region", region)
    try:
        month = Period.parse(period) if period is not None else None
    except ValueError as exc:
        raise invalid("period", "month", str(exc)) from None
    day = today or date.today()
    views = await waiting_times.overview(st.db, care_area, today=day, period=month, region=region)
    items = [RegionWaitsOut.of(v, v.newest if month is None else None) for v in views]
    return read_response(request, WaitingTimesOut(care_area=care_area, care_area_name=care_areas()[care_area].name_sv,
                                                  today=day, period=period, items=items))


@router.get("/capacity", response_model=CapacityOut, tags=["capacity"],
            summary="The units' free-capacity feed: estimated wait in weeks, free capacity yes/no, stale flags")
async def get_capacity(request: Request, st: State, who: Who, care_area: AreaParam = None, region: RegionParam = None,
                       today: DayParam = None) -> Response:
    _known_area("care_area", care_area)
    _known_region("region", region)
    day = today or date.today()
    rows = await capacity.feed(st.db, today=day, care_area=care_area, region=region)
    return read_response(request, CapacityOut(today=day, care_area=care_area, region=region,
                                              items=[UnitCapacityOut.of(r, rep) for r, rep in rows]))
