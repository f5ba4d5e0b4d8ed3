"""`GET /v1/worklist`: what the calling region must act on first, with the deadlines, among the
cases the API lets it see (the same rule as `/v1/cases`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from marketplace.entrypoints.api.deps import State, Who, region_of
from marketplace.entrypoints.api.routes.common import visible_cases_query
from marketplace.entrypoints.web.public import today_of
from marketplace.services import market_views

router = APIRouter(prefix="/v1", tags=["cases"])


@router.get("/worklist", summary="The caller region's worklist: holds to answer with their deadlines, referrals "
                                 "to acknowledge, matches waiting for the provider, patients near the guarantee")
async def worklist(st: State, who: Who) -> JSONResponse:
    region = region_of(who)
    async with st.db.session() as session:
        body = await market_views.worklist(session, visible_cases_query(who), region, today_of(st))
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
