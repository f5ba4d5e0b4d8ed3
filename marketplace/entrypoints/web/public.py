"""The public page (no login): per month, region and care area, counts with small numbers hidden."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from marketplace.entrypoints.api.deps import State
from marketplace.entrypoints.web.pages import html
from marketplace.lifecycle.swedish_time import SWEDISH_TIME
from marketplace.services import market_views

router = APIRouter(include_in_schema=False)


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
    return JSONResponse(table, headers={"Cache-Control": "public, max-age=60"})
