"""`/v1/clearing-rounds`: the operator asks for a clearing round (an operator command on the bus);
anyone may read a completed round's totals (counts and sums, nothing of any one case)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from events import ClearingRoundRequested
from marketplace.adapters.orm import ClearingRoundRow
from marketplace.entrypoints.api.deps import State, Who
from marketplace.entrypoints.api.problems import Problem, not_found
from marketplace.entrypoints.api.routes.common import IdempotencyKey, Ref, payload_problem, read_response
from marketplace.entrypoints.api.routes.offers import WRITE_RESPONSES
from marketplace.entrypoints.api.schemas import Accepted, ClearingRoundIn, ClearingRoundOut
from marketplace.entrypoints.api.writes import Outcome, idempotent, queued, refused

router = APIRouter(prefix="/v1", tags=["clearing"])


@router.post("/clearing-rounds", status_code=202, response_model=Accepted, responses=WRITE_RESPONSES,
             summary="The operator asks for a clearing round of one care area (runs on the bus)")
async def request_round(request: Request, st: State, who: Who, body: ClearingRoundIn,
                        idempotency_key: IdempotencyKey = None) -> JSONResponse:
    def operator_only() -> None:
        if not who.is_operator:
            raise Problem(403, "forbidden", "only the operator asks for clearing rounds")

    async def work() -> Outcome:
        try:
            payload = ClearingRoundRequested(**body.model_dump())
        except ValidationError as exc:
            raise payload_problem(exc) from None
        verdict = await st.bus.send(who.party, payload)
        if not verdict.decided:
            return queued(verdict)
        if not verdict.accepted:
            return refused(verdict, request.url.path)
        accepted = Accepted(event_id=verdict.event_id, status="accepted",
                            detail="on the care area's book; the round's totals appear at the Location when done")
        return Outcome(202, accepted.model_dump(), {"Location": f"/v1/clearing-rounds/{body.round_id}"},
                       verdict.event_id)

    return await idempotent(st, request, who, idempotency_key, body, action="clearing.request",
                            target=body.round_id, work=work, guard=operator_only)


@router.get("/clearing-rounds/{round_id}", response_model=ClearingRoundOut,
            responses={404: {"description": "no such round (yet)"}}, summary="A completed round's totals")
async def get_round(request: Request, st: State, who: Who, round_id: Ref) -> Response:
    async with st.db.session() as session:
        row = await session.get(ClearingRoundRow, round_id)
    if row is None:
        raise not_found("completed round " + round_id)
    return read_response(request, ClearingRoundOut.model_validate(row))
