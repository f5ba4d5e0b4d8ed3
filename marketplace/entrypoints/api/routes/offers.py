"""`/v1/offers`: a providing region publishes and withdraws capacity; everyone reads their own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from events import OfferPublished, OfferWithdrawn
from events.payloads import CareArea
from marketplace.adapters.orm import OfferRow
from marketplace.entrypoints.api.deps import State, Who, region_of
from marketplace.entrypoints.api.problems import not_found
from marketplace.entrypoints.api.routes.common import (
    IdempotencyKey,
    Limit,
    Offset,
    Ref,
    content_etag,
    page,
    payload_problem,
    read_response,
)
from marketplace.entrypoints.api.schemas import OfferIn, OfferOut, OfferWithdrawalIn, Page
from marketplace.entrypoints.api.writes import Outcome, idempotent, queued, refused

router = APIRouter(prefix="/v1", tags=["offers"])
WRITE_RESPONSES: dict[int | str, dict[str, object]] = {
    202: {"description": "published; intake has not decided within the wait"},
    400: {"description": "Idempotency-Key missing"}, 409: {"description": "conflict or key in flight"},
    422: {"description": "invalid: the field and the rule"}, 429: {"description": "rate limited"},
}


@router.get("/offers", response_model=Page[OfferOut], summary="The caller's offers (the operator: all)")
async def list_offers(request: Request, st: State, who: Who, limit: Limit = 100, offset: Offset = 0,
                      care_area: Annotated[CareArea | None, Query()] = None,
                      status: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    query = select(OfferRow)
    if not who.is_operator:
        query = query.where(OfferRow.region == who.region)
    if care_area:
        query = query.where(OfferRow.care_area == care_area)
    if status:
        query = query.where(OfferRow.status == status)
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(OfferRow.created_at), col(OfferRow.offer_id))
                                   .offset(offset).limit(limit + 1))).all()
    items = [OfferOut.model_validate(r) for r in rows[:limit]]
    return read_response(request, page(items, limit, offset, len(rows) > limit))


async def _offer(st: State, who_region: str | None, operator: bool, offer_id: str) -> OfferRow | None:
    async with st.db.session() as session:
        row = await session.get(OfferRow, offer_id)
    return row if row is not None and (operator or row.region == who_region) else None


@router.get("/offers/{offer_id}", response_model=OfferOut, responses={404: {"description": "no such offer"}})
async def get_offer(request: Request, st: State, who: Who, offer_id: Ref) -> Response:
    row = await _offer(st, who.region, who.is_operator, offer_id)
    if row is None:
        raise not_found("offer " + offer_id)
    return read_response(request, OfferOut.model_validate(row))


def _created(row: OfferRow, event_id: str, status: int = 201) -> Outcome:
    body = OfferOut.model_validate(row).model_dump(mode="json")
    return Outcome(status, body, {"Location": f"/v1/offers/{row.offer_id}", "ETag": content_etag(body)}, event_id)


@router.post("/offers", status_code=201, response_model=OfferOut, responses=WRITE_RESPONSES,
             summary="Publish an offer of the caller's region")
async def publish_offer(request: Request, st: State, who: Who, body: OfferIn,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    region = who.region or ""

    async def work() -> Outcome:
        try:
            payload = OfferPublished(region=region, **body.model_dump())
        except ValidationError as exc:
            raise payload_problem(exc) from None
        verdict = await st.bus.send(region, payload)
        if not verdict.decided:
            return queued(verdict)
        if not verdict.accepted:
            return refused(verdict, request.url.path)
        row = await _offer(st, region, False, body.offer_id)
        assert row is not None  # intake accepted it: it is stored
        return _created(row, verdict.event_id)

    return await idempotent(st, request, who, idempotency_key, body, action="offer.publish", target=body.offer_id,
                            work=work, guard=lambda: region_of(who))


@router.post("/offers/{offer_id}/withdrawal", response_model=OfferOut, responses=WRITE_RESPONSES,
             summary="Withdraw one of the caller's offers (slots already held stay held)")
async def withdraw_offer(request: Request, st: State, who: Who, offer_id: Ref, body: OfferWithdrawalIn,
                         idempotency_key: IdempotencyKey = None) -> JSONResponse:
    region = who.region or ""

    async def work() -> Outcome:
        if await _offer(st, region, False, offer_id) is None:
            raise not_found("offer " + offer_id)
        verdict = await st.bus.send(region, OfferWithdrawn(offer_id=offer_id, region=region,
                                                               reason_code=body.reason_code))
        if not verdict.decided:
            return queued(verdict)
        if not verdict.accepted:
            return refused(verdict, request.url.path)
        row = await _offer(st, region, False, offer_id)
        assert row is not None
        return _created(row, verdict.event_id, status=200)

    return await idempotent(st, request, who, idempotency_key, body, action="offer.withdraw", target=offer_id,
                            work=work, guard=lambda: region_of(who))
