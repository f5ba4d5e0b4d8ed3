"""`/v1/matches` and `/v1/messages`: what the matcher proposed and what was sent, as far as it
concerns the caller (the requesting or providing region; the sender or recipient organisation)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import col, select

from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import MatchRow
from marketplace.entrypoints.api.deps import State, Who
from marketplace.entrypoints.api.problems import not_found
from marketplace.entrypoints.api.routes.common import Limit, Offset, Ref, page, read_response
from marketplace.entrypoints.api.schemas import MatchOut, MessageOut, Page, SealedMessageOut
from marketplace.entrypoints.api.tokens import Caller

router = APIRouter(prefix="/v1")


def _match_visible(who: Caller) -> Any:
    return (col(MatchRow.requesting_region) == who.region) | (col(MatchRow.providing_region) == who.region)


@router.get("/matches", response_model=Page[MatchOut], tags=["matches"],
            summary="Matches the caller's region requested or provides (the operator: all)")
async def list_matches(request: Request, st: State, who: Who, limit: Limit = 100, offset: Offset = 0) -> Response:
    query = select(MatchRow)
    if not who.is_operator:
        query = query.where(_match_visible(who))
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(MatchRow.created_at), col(MatchRow.match_id))
                                   .offset(offset).limit(limit + 1))).all()
    return read_response(request, page([MatchOut.model_validate(r) for r in rows[:limit]], limit, offset,
                                       len(rows) > limit))


@router.get("/matches/{match_id}", response_model=MatchOut, tags=["matches"],
            responses={404: {"description": "no such match"}})
async def get_match(request: Request, st: State, who: Who, match_id: Ref) -> Response:
    async with st.db.session() as session:
        row = await session.get(MatchRow, match_id)
    if row is None or not (who.is_operator or who.region in (row.requesting_region, row.providing_region)):
        raise not_found("match " + match_id)
    return read_response(request, MatchOut.model_validate(row))


def _message_visible(who: Caller) -> Any:
    return ((col(SecureMessageRow.sender_org) == who.org_number)
            | (col(SecureMessageRow.recipient_org) == who.org_number))


@router.get("/messages", response_model=Page[MessageOut], tags=["messages"],
            summary="Secure messages the caller's organisation sent or received (headers and delivery state)")
async def list_messages(request: Request, st: State, who: Who, limit: Limit = 100, offset: Offset = 0) -> Response:
    query = select(SecureMessageRow)
    if not who.is_operator:
        query = query.where(_message_visible(who))
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(SecureMessageRow.created_at), col(SecureMessageRow.message_id))
                                   .offset(offset).limit(limit + 1))).all()
    return read_response(request, page([MessageOut.model_validate(r) for r in rows[:limit]], limit, offset,
                                       len(rows) > limit))


@router.get("/messages/{message_id}", response_model=SealedMessageOut, tags=["messages"],
            responses={404: {"description": "no such message"}},
            summary="One message; its sealed form only for its recipient, who alone can open it")
async def get_message(request: Request, st: State, who: Who, message_id: Ref) -> Response:
    async with st.db.session() as session:
        row = await session.get(SecureMessageRow, message_id)
    if row is None or not (who.is_operator or who.org_number in (row.sender_org, row.recipient_org)):
        raise not_found("message " + message_id)
    out = SealedMessageOut.model_validate(row)
    if who.org_number != row.recipient_org:
        out = out.model_copy(update={"sealed": None})
    return read_response(request, out)
