"""`/v1/cases`: the cases that concern the caller, their timelines, what the caller may do now, and
the parties' commands, each published on the caller's own channel as `case.command`.

Who may say what, and when, is the lifecycle's own rule (`marketplace.lifecycle.allowed_commands`
and the bus's `case_commands.authorise`), asked here only to answer early and to list the allowed
actions; intake checks the same rules again when the command arrives.
"""

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlmodel import col

from events import CaseCommandIssued
from events.payloads import CareArea
from marketplace.entrypoints.api.deps import State, Who
from marketplace.entrypoints.api.problems import Problem, not_found
from marketplace.entrypoints.api.routes.common import (
    IdempotencyKey,
    IfMatch,
    Limit,
    Offset,
    Ref,
    check_if_match,
    may_see,
    page,
    read_response,
    state_of,
    timeline_rows,
    visible_case,
    visible_cases_query,
    weak_etag,
)
from marketplace.entrypoints.api.routes.offers import WRITE_RESPONSES
from marketplace.entrypoints.api.schemas import (
    AllowedAction,
    AllowedActionsOut,
    CancelIn,
    CaseOut,
    DeclineIn,
    Empty,
    FollowUpIn,
    InvoiceIn,
    Page,
    PatientAnswerIn,
    PaymentIn,
    PerformedIn,
    ScheduleIn,
    TimelineEntryOut,
    TimelineOut,
    WithdrawIn,
)
from marketplace.entrypoints.api.tokens import Caller
from marketplace.entrypoints.api.writes import Outcome, idempotent, queued, refused
from marketplace.lifecycle import CaseState, Chain, allowed_commands, merge, verify
from marketplace.lifecycle.parties import OPERATOR_COMMANDS
from marketplace.services.case_commands import authorise
from marketplace.services.refusals import Refused
from marketplace.services.timeline import load_annotations, to_entry

router = APIRouter(prefix="/v1", tags=["cases"])


class Action:
    """One party command as a resource: `POST /v1/cases/{ref}/<path>`."""

    def __init__(self, path: str, command: str, body: type[BaseModel], summary: str,
                 needs: tuple[str, ...] = ()) -> None:
        self.path, self.command, self.body, self.summary, self.needs = path, command, body, summary, needs

    def args(self, body: BaseModel | None, state: CaseState) -> dict[str, Any]:
        """The command's arguments: the body's, and what the case already knows (the match being
        answered, the referral being acknowledged), so a client cannot answer the wrong one."""
        args = body.model_dump(mode="json", exclude_none=True) if body is not None else {}
        if "match_id" in self.needs and state.match is not None:
            args["match_id"] = state.match.match_id
        if "referral_id" in self.needs and state.referral_id is not None:
            args["referral_id"] = state.referral_id
        return args


ACTIONS: tuple[Action, ...] = (
    Action("accept", "accept_match", Empty, "The providing region accepts the proposed match", ("match_id",)),
    Action("decline", "decline_match", DeclineIn, "The providing region declines, with a reason code",
           ("match_id",)),
    Action("offer-to-patient", "offer_to_patient", Empty, "The home region has offered the slot to the patient"),
    Action("patient-answer", "record_patient_answer", PatientAnswerIn,
           "The home region records the patient's answer (a decline needs a reason code)", ("match_id",)),
    Action("referral-acknowledgement", "acknowledge_referral", Empty, "The providing region acknowledges the "
           "referral", ("referral_id",)),
    Action("schedule", "schedule", ScheduleIn, "The providing region books (or moves) the date of care"),
    Action("performed", "record_performed", PerformedIn, "The providing region reports the care performed"),
    Action("follow-up", "record_follow_up", FollowUpIn, "The providing region reports the follow-up"),
    Action("invoice", "invoice", InvoiceIn, "The providing region invoices the locked price"),
    Action("payment", "record_payment", PaymentIn, "The home region records a payment against the invoice"),
    Action("withdrawal", "withdraw", WithdrawIn, "The home region withdraws the case"),
    Action("cancellation", "cancel", CancelIn, "The operator (or the home region) cancels the case"),
    Action("closure", "close", Empty, "The operator (or the home region) closes a settled case"),
)
ACTIONS_BY_COMMAND = {a.command: a for a in ACTIONS}


def may_issue(who: Caller, command: str, state: CaseState) -> bool:
    """The bus's own rule for who may say what, and the operator only its operator commands."""
    if who.is_operator and command not in OPERATOR_COMMANDS:
        return False
    try:
        authorise(who.party, command, state)
    except Refused:
        return False
    return True


def allowed_actions(who: Caller, state: CaseState) -> list[AllowedAction]:
    legal = allowed_commands(state.status)
    return [AllowedAction(action=ACTIONS_BY_COMMAND[c].path, command=c,
                          href=f"/v1/cases/{state.case_ref}/{ACTIONS_BY_COMMAND[c].path}")
            for c in legal if c in ACTIONS_BY_COMMAND and may_issue(who, c, state)]


@router.get("/cases", response_model=Page[CaseOut],
            summary="Cases that concern the caller: its own patients', and those it provides care for now")
async def list_cases(request: Request, st: State, who: Who, limit: Limit = 100, offset: Offset = 0,
                     care_area: Annotated[CareArea | None, Query()] = None,
                     state: Annotated[str | None, Query(max_length=32)] = None) -> Response:
    from marketplace.adapters.orm import CaseRow

    query = visible_cases_query(who)
    if care_area:
        query = query.where(CaseRow.care_area == care_area)
    if state:
        query = query.where(CaseRow.state == state)
    async with st.db.session() as session:
        rows = (await session.exec(query.order_by(col(CaseRow.case_ref)).offset(offset).limit(limit + 1))).all()
        items = [CaseOut.model_validate(r) for r in rows[:limit] if await may_see(session, who, r)]
    return read_response(request, page(items, limit, offset, len(rows) > limit))


@router.get("/cases/{case_ref}", response_model=CaseOut, responses={404: {"description": "no such case"}},
            summary="One case; its ETag is its version")
async def get_case(request: Request, st: State, who: Who, case_ref: Ref) -> Response:
    async with st.db.session() as session:
        row = await visible_case(session, who, case_ref)
    if row is None:
        raise not_found("case " + case_ref)
    return read_response(request, CaseOut.model_validate(row), etag=weak_etag(row.version))


@router.get("/cases/{case_ref}/timeline", response_model=TimelineOut, responses={404: {"description": "no such case"}},
            summary="The case's hash-chained timeline, checked")
async def get_timeline(request: Request, st: State, who: Who, case_ref: Ref) -> Response:
    async with st.db.session() as session:
        row = await visible_case(session, who, case_ref)
        if row is None:
            raise not_found("case " + case_ref)
        events = [to_entry(r) for r in await timeline_rows(session, case_ref)]
        annotations = await load_annotations(session, case_ref)
    chains = {str(Chain.EVENTS): verify(events).ok, str(Chain.ANNOTATIONS): verify(annotations).ok}
    entries = merge(events, annotations)
    out = TimelineOut(case_ref=case_ref, version=row.version, verified=all(chains.values()), chains=chains,
                      entries=[TimelineEntryOut(kind="annotation" if e.is_annotation else "event", version=e.version,
                                                event_id=str(e.event_id), event_type=e.event_type,
                                                occurred_at=e.occurred_at, payload=dict(e.payload),
                                                prev_hash=e.prev_hash, hash=e.hash) for e in entries])
    return read_response(request, out, etag=weak_etag(f"{row.version}.{len(entries)}"))


@router.get("/cases/{case_ref}/allowed-actions", response_model=AllowedActionsOut,
            responses={404: {"description": "no such case"}},
            summary="What this caller may do on the case now (never cached)")
async def get_allowed_actions(st: State, who: Who, case_ref: Ref) -> JSONResponse:
    async with st.db.session() as session:
        row = await visible_case(session, who, case_ref)
        if row is None:
            raise not_found("case " + case_ref)
        case = state_of(await timeline_rows(session, case_ref))
    actions = allowed_actions(who, case) if case is not None else []
    out = AllowedActionsOut(case_ref=case_ref, state=row.state, version=row.version, actions=actions)
    return JSONResponse(out.model_dump(mode="json"), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _command_route(action: Action) -> None:
    optional = action.body is Empty

    async def issue(request: Request, st: State, who: Who, case_ref: Ref, if_match: IfMatch = None,
                    idempotency_key: IdempotencyKey = None, body: Any = None) -> JSONResponse:
        async def work() -> Outcome:
            async with st.db.session() as session:
                row = await visible_case(session, who, case_ref)
                if row is None:
                    raise not_found("case " + case_ref)
                case = state_of(await timeline_rows(session, case_ref))
            if case is None:
                raise not_found("case " + case_ref)
            if not may_issue(who, action.command, case):
                raise Problem(403, "forbidden", f"this caller may not {action.path.replace('-', ' ')} this case",
                              allowed_actions=[a.action for a in allowed_actions(who, case)])
            check_if_match(if_match, row.version)
            if action.command not in allowed_commands(case.status):
                raise Problem(409, "illegal-transition", f"the case is {case.status.value}: {action.path} is not "
                                                         "possible now",
                              state=case.status.value, allowed_actions=[a.action for a in allowed_actions(who, case)])
            payload = CaseCommandIssued(case_ref=case_ref, command=action.command,
                                        args=action.args(body, case))
            verdict = await st.bus.send(who.party, payload)
            if not verdict.decided:
                return queued(verdict)
            if not verdict.accepted:
                return refused(verdict, request.url.path)
            async with st.db.session() as session:
                after = await visible_case(session, who, case_ref)
            if after is None:
                # The command ended the caller's part in the case (a provider's decline).
                return Outcome(200, {"case_ref": case_ref, "status": "done", "detail": "the case no longer "
                                     "concerns the caller"}, {}, verdict.event_id)
            out = CaseOut.model_validate(after).model_dump(mode="json")
            return Outcome(200, out, {"ETag": weak_etag(after.version), "Location": f"/v1/cases/{case_ref}"},
                           verdict.event_id)

        return await idempotent(st, request, who, idempotency_key, body, action=f"case.{action.command}",
                                target=case_ref, work=work)

    # Each command's own body model, so the OpenAPI document shows it (all parameters keyword-only,
    # so a required body may follow the optional headers).
    signature = inspect.signature(issue)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
              if p.name != "body"]
    params.append(inspect.Parameter(
        "body", inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[action.body | None, Body()] if optional else Annotated[action.body, Body()],
        default=None if optional else inspect.Parameter.empty))
    issue.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    issue.__name__ = f"case_{action.command}"
    router.post(f"/cases/{{case_ref}}/{action.path}", response_model=CaseOut, summary=action.summary,
                responses={**WRITE_RESPONSES, 403: {"description": "not this caller's to say"},
                           404: {"description": "no such case"}, 412: {"description": "stale If-Match"},
                           428: {"description": "If-Match missing"}})(issue)


for _action in ACTIONS:
    _command_route(_action)
