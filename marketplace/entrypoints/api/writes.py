"""Every POST: an Idempotency-Key, done at most once per client and key, audited.

The route's work returns an `Outcome` once something was published (stored for retries, whatever
intake decided); a `Problem` raised before that (a stale If-Match, a case the caller cannot see)
releases the key, so the client may try again with it once it has fixed its request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from marketplace.adapters.api_orm import AuditRow
from marketplace.entrypoints.api.channel import Verdict
from marketplace.entrypoints.api.deps import ApiState
from marketplace.entrypoints.api.problems import PROBLEM_JSON, Problem, invalid
from marketplace.entrypoints.api.schemas import Accepted
from marketplace.entrypoints.api.tokens import Caller
from marketplace.services import idempotency

log = structlog.get_logger(__name__)
KEY_HEADER = "Idempotency-Key"
_MAX_KEY = 255

# Intake's rules whose refusal is a conflict with the current state rather than a bad request.
_CONFLICT_RULES = {"unique_id", "unique_case_ref", "IllegalTransition", "StaleCommand", "not_open", "state"}


@dataclass
class Outcome:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    event_id: str | None = None

    def response(self, *, replayed: bool = False) -> JSONResponse:
        headers = {**self.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
        media = PROBLEM_JSON if self.status_code >= 400 else "application/json"
        return JSONResponse(self.body, status_code=self.status_code, headers=headers, media_type=media)


def api_field(bus_field: str) -> str:
    """The request's field for a field named on the bus (`payload.args.x` -> `x`)."""
    for head in ("payload.args.", "payload."):
        if bus_field.startswith(head):
            return bus_field[len(head):]
    return bus_field


def refused(verdict: Verdict, instance: str) -> Outcome:
    """Intake's refusal as a problem: the field and the rule it named."""
    rule = verdict.refused_rule or "refused"
    status = 409 if rule in _CONFLICT_RULES else 422
    problem = invalid(api_field(verdict.refused_field or "request"), rule, verdict.refused_message or "refused",
                      status=status)
    return Outcome(status, problem.body(instance), event_id=verdict.event_id)


def queued(verdict: Verdict) -> Outcome:
    body = Accepted(event_id=verdict.event_id,
                    detail="published on the caller's channel; intake has not decided yet").model_dump()
    return Outcome(202, body, event_id=verdict.event_id)


def fingerprint(method: str, path: str, body: BaseModel | None) -> str:
    """What a key is bound to: the method, the path and the body as the route's model reads it
    (so the same request with its JSON keys in another order or other spacing is the same)."""
    text = f"{method} {path}\n{body.model_dump_json() if body is not None else ''}"
    return hashlib.sha256(text.encode()).hexdigest()


def _audit(request: Request, who: Caller, action: str, target: str | None, key: str | None, status_code: int,
           outcome: str, event_id: str | None = None) -> AuditRow:
    return AuditRow(client_id=who.client_id, role=who.role, region=who.region, org_number=who.org_number,
                    hsa_id=who.hsa_id, method=request.method, path=request.url.path[:500], action=action,
                    target=target[:200] if target else None, idempotency_key=key, event_id=event_id,
                    status_code=status_code, outcome=outcome[:500])


async def audit_refusal(st: ApiState, request: Request, who: Caller, action: str, target: str | None,
                        problem: Problem, key: str | None = None) -> None:
    async with st.db.session() as session:
        session.add(_audit(request, who, action, target, key, problem.status, problem.detail))
        await session.commit()


_UNKNOWN = Caller(client_id="unknown", role="region", region=None, org_number=None, hsa_id=None)


async def audit_unrouted(request: Request, problem: Problem) -> None:
    """A POST refused before its route ran: a 401, or a body that does not parse. Recorded with the
    caller if the token was read, else as unknown; the detail names fields and rules, never values."""
    if request.method != "POST":
        return
    who: Caller = getattr(request.state, "caller", None) or _UNKNOWN
    st: ApiState = request.app.state.nvf
    async with st.db.session() as session:
        row = _audit(request, who, f"POST {request.url.path}"[:64], None, None, problem.status, problem.detail)
        if who is _UNKNOWN:
            row.role = "unknown"
        session.add(row)
        await session.commit()


async def idempotent(st: ApiState, request: Request, who: Caller, key: str | None, body: BaseModel | None, *,
                     action: str, target: str | None, work: Callable[[], Awaitable[Outcome]],
                     guard: Callable[[], object] | None = None) -> JSONResponse:
    """Run `work` once per client and key. `guard` checks the caller's role first (a 403 is audited
    too, and needs no key)."""
    if guard is not None:
        try:
            guard()
        except Problem as forbidden:
            await audit_refusal(st, request, who, action, target, forbidden, key)
            raise
    if key is None or not key.strip():
        missing = Problem(400, "idempotency-key-missing", f"the {KEY_HEADER} header is required on every POST",
                          invalid_params=[{"name": KEY_HEADER, "rule": "required", "reason": "missing"}])
        await audit_refusal(st, request, who, action, target, missing)
        raise missing
    key = key.strip().strip('"')
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        bad_key = invalid(KEY_HEADER, "key_format", f"1 to {_MAX_KEY} printable characters", status=400)
        # The malformed key itself is not stored: it may be anything, of any length.
        await audit_refusal(st, request, who, action, target, bad_key)
        raise bad_key
    claim = await idempotency.claim(st.db, who.client_id, key, fingerprint(request.method, request.url.path, body),
                                    st.settings.api_idempotency_ttl_s)
    if isinstance(claim, idempotency.Mismatch):
        mismatch = invalid(KEY_HEADER, "same_request", "this key was used with another request")
        await audit_refusal(st, request, who, action, target, mismatch, key)
        raise mismatch
    if isinstance(claim, idempotency.InFlight):
        in_flight = Problem(409, "idempotency-key-in-flight",
                            "the first request with this key is still being processed", headers={"Retry-After": "1"})
        await audit_refusal(st, request, who, action, target, in_flight, key)
        raise in_flight
    if isinstance(claim, idempotency.Replay):
        return Outcome(claim.status_code, claim.body, claim.headers).response(replayed=True)
    try:
        outcome = await work()
    except Problem as problem:
        await idempotency.release(st.db, who.client_id, key,
                                  _audit(request, who, action, target, key, problem.status, problem.detail))
        raise
    except BaseException:
        await idempotency.release(st.db, who.client_id, key)
        raise
    await idempotency.complete(st.db, who.client_id, key, outcome.status_code, outcome.body, outcome.headers,
                               _audit(request, who, action, target, key, outcome.status_code,
                                      str(outcome.body.get("detail") or outcome.body.get("status") or "done"),
                                      outcome.event_id))
    log.info("api.write", action=action, target=target, client_id=who.client_id, party=who.party,
             status=outcome.status_code, event_id=outcome.event_id)
    return outcome.response()
