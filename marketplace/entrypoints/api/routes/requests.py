"""`/v1/requests`: a home region asks for care for its patients (by pseudonymous reference) and
withdraws what it no longer needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from events import RequestPublished, RequestWithdrawn
from events.payloads import CareArea
from marketplace.adapters.orm import RequestRow
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
from marketplace.entrypoints.api.routes.offers import WRITE_RESPONSES
from marketplace.entrypoints.api.schemas import Page, RequestIn, RequestOut, RequestWithdrawalIn
from marketplace.entrypoints.api.writes import Outcome, idempotent, queued, refused

router = APIRouter(prefix="/v1", tags=["requests"])


@router.get("/requests", response_model=Page[RequestOut], summary="The caller's requests (the operator: all)")
async def list_requests(request: Request, st: State, who: Who, limit: Limit = 100, offset: Offset = 0,
                        care_area: Annotated[CareArea | None, Query()] = None,
                        status: Annotated[str | None, Query(max_length=16)] = None) -> Response:
    query = select(RequestRow)
    if not who.is_operator:
        query = query.where(RequestRow.region == who.region)
    if care_area:
        query = query.where(RequestRow.care_area == care_area)
    if status:
        query = query.where(RequestRow.status == status)
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(RequestRow.created_at), col(RequestRow.request_id))
                                   .offset(offset).limit(limit + 1))).all()
    items = [RequestOut.model_validate(r) for r in rows[:limit]]
    return read_response(request, page(items, limit, offset, len(rows) > limit))


async def _request(st: State, region: str | None, operator: bool, request_id: str) -> RequestRow | None:
    async with st.db.session() as session:
        row = await session.get(RequestRow, request_id)
    return row if row is not None and (operator or row.region == region) else None


@router.get("/requests/{request_id}", response_model=RequestOut, responses={404: {"description": "no such request"}})
async def get_request(request: Request, st: State, who: Who, request_id: Ref) -> Response:
    row = await _request(st, who.region, who.is_operator, request_id)
    if row is None:
        raise not_found("request " + request_id)
    return read_response(request, RequestOut.model_validate(row))


def _result(row: RequestRow, event_id: str, status: int = 201) -> Outcome:
    body = RequestOut.model_validate(row).model_dump(mode="json")
    return Outcome(status, body, {"Location": f"/v1/requests/{row.request_id}", "ETag": content_etag(body)},
                   event_id)


@router.post("/requests", status_code=201, response_model=RequestOut, responses=WRITE_RESPONSES,
             summary="Publish a care request of the caller's region; each patient becomes a case")
async def publish_request(request: Request, st: State, who: Who, body: RequestIn,
                          idempotency_key: IdempotencyKey = None) -> JSONResponse:
    region = who.region or ""

    async def work() -> Outcome:
        try:
            payload = RequestPublished(region=region, **body.model_dump())
        except ValidationError as exc:
            raise payload_problem(exc) from None
        verdict = await st.bus.send(region, payload)
        if not verdict.decided:
            return queued(verdict)
        if not verdict.accepted:
            return refused(verdict, request.url.path)
        row = await _request(st, region, False, body.request_id)
        assert row is not None
        return _result(row, verdict.event_id)

    return await idempotent(st, request, who, idempotency_key, body, action="request.publish",
                            target=body.request_id, work=work, guard=lambda: region_of(who))


@router.post("/requests/{request_id}/withdrawal", response_model=RequestOut, responses=WRITE_RESPONSES,
             summary="Withdraw one of the caller's requests, or some of its cases")
async def withdraw_request(request: Request, st: State, who: Who, request_id: Ref, body: RequestWithdrawalIn,
                           idempotency_key: IdempotencyKey = None) -> JSONResponse:
    region = who.region or ""

    async def work() -> Outcome:
        if await _request(st, region, False, request_id) is None:
            raise not_found("request " + request_id)
        payload = RequestWithdrawn(request_id=request_id, region=region, reason_code=body.reason_code,
                                   case_refs=tuple(body.case_refs) if body.case_refs is not None else None)
        verdict = await st.bus.send(region, payload)
        if not verdict.decided:
            return queued(verdict)
        if not verdict.accepted:
            return refused(verdict, request.url.path)
        row = await _request(st, region, False, request_id)
        assert row is not None
        return _result(row, verdict.event_id, status=200)

    return await idempotent(st, request, who, idempotency_key, body, action="request.withdraw", target=request_id,
                            work=work, guard=lambda: region_of(who))
