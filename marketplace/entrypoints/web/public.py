"""The public page (no login): per month, region and care area, counts with small numbers hidden;
and the waiting times per region (lägesbild), the public aggregates the regions report, with a
suppressed cell kept suppressed. Plus the reference data the pages' forms list (regions, care
areas and the words that find them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from events.payloads import CareArea
from marketplace.agreements.vocabulary import terms_of
from marketplace.entrypoints.api.brokering_schemas import RegionWaitsOut, WaitingTimesOut
from marketplace.entrypoints.api.deps import State
from marketplace.entrypoints.api.problems import invalid
from marketplace.entrypoints.web.pages import html
from marketplace.lifecycle.swedish_time import SWEDISH_TIME
from marketplace.services import market_views, waiting_times
from matchers.reference import care_areas, regions

router = APIRouter(include_in_schema=False)
_PUBLIC_CACHE = {"Cache-Control": "public, max-age=60"}


def today_of(st: State) -> date:
    """The marketplace's day: the workers' clock when this process hosts them (tests move it)."""
    runtime = st.runtime
    clock = getattr(getattr(runtime, "context", None), "clock", None)
    now = clock() if callable(clock) else datetime.now(UTC)
    return now.astimezone(SWEDISH_TIME).date()


@router.get("/public")
async def public_page() -> Response:
    return html("public.html")


@router.get("/public/data.json")
async def public_data(st: State) -> JSONResponse:
    async with st.db.session() as session:
        table = await market_views.public_table(session, today_of(st))
    return JSONResponse(table, headers=_PUBLIC_CACHE)


@router.get("/public/reference.json")
async def reference() -> JSONResponse:
    """Regions and care areas for the pages' choices, and the glossary: the plain words (names and
    synonyms) and the codes that the provider search takes for each care area."""
    areas: list[dict[str, Any]] = []
    for code, area in care_areas().items():
        terms = terms_of(code)
        areas.append({"code": code, "name": area.name_sv, "name_en": area.name_en,
                      "words": [t.term for t in terms if t.kind != "code"],
                      "codes": [t.term for t in terms if t.kind == "code"]})
    return JSONResponse({"regions": [{"code": r.code, "name": r.name} for r in regions().values()],
                         "care_areas": areas}, headers=_PUBLIC_CACHE)


@router.get("/public/waiting-times.json")
async def public_waiting_times(st: State, care_area: Annotated[CareArea, Query()] = "cataract") -> JSONResponse:
    """What `/v1/waiting-times` gives, for anyone: each region's newest month, its 13-month trend and
    whether its figures are stale, as of the marketplace's day."""
    if care_area not in care_areas():
        raise invalid("care_area", "known_care_area", f"unknown care area {care_area!r}")
    day = today_of(st)
    views = await waiting_times.overview(st.db, care_area, today=day)
    body = WaitingTimesOut(care_area=care_area, care_area_name=care_areas()[care_area].name_sv, today=day,
                           period=None, items=[RegionWaitsOut.of(v, v.newest) for v in views])
    return JSONResponse(body.model_dump(mode="json"), headers=_PUBLIC_CACHE)
