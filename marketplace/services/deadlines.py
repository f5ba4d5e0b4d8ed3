"""The deadline sweep: holds that expire, referrals to escalate, care-guarantee warnings.

Deadlines live in the database (`cases.next_deadline_at`). A sweep finds the cases whose next
deadline has passed, asks the lifecycle what is due, and publishes each due command on the scheduler's
ingress stream, with the deadline's stable id: a sweep that runs twice (or
two sweepers that overlap) publishes the same event, which intake processes once.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import CaseCommandIssued, new_envelope
from marketplace.adapters.orm import CaseRow, OutboxRow
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import Command, due_deadlines
from marketplace.lifecycle.parties import SCHEDULER
from marketplace.services.context import ServiceContext
from marketplace.services.lifecycle import CaseLedger

log = structlog.get_logger(__name__)


def command_args(command: Command) -> dict[str, str | int | float | bool | None]:
    """A lifecycle command's own fields as bus arguments (the inverse of case_commands.build_command)."""
    args: dict[str, str | int | float | bool | None] = {}
    for f in dataclasses.fields(command):
        if f.name in ("case_ref", "command_id", "_"):
            continue
        value: Any = getattr(command, f.name)
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Decimal):
            value = str(value)
        args[f.name] = value
    return args


async def sweep(session: AsyncSession, ctx: ServiceContext, *, limit: int = 1000) -> int:
    """Stage the commands that are due now; returns how many were new."""
    now = ctx.clock()
    rows = (await session.exec(
        select(CaseRow).where(col(CaseRow.next_deadline_at).is_not(None), col(CaseRow.next_deadline_at) <= now)
        .order_by(col(CaseRow.next_deadline_at)).limit(limit))).all()
    if not rows:
        return 0
    ledger = CaseLedger(session, ctx)
    await ledger.load(r.case_ref for r in rows)
    staged = []
    for row in rows:
        state = ledger.states[row.case_ref]
        if state is None:
            continue
        for due in due_deadlines(state, now, ctx.policy):
            envelope = new_envelope(
                CaseCommandIssued(case_ref=row.case_ref, command=due.command.NAME,
                                  args=command_args(due.command)),
                producer=SCHEDULER, event_id=due.deadline_id, correlation_id=str(due.deadline_id))
            staged.append(envelope)
    if not staged:
        return 0
    ids = [str(e.event_id) for e in staged]
    already = set((await session.exec(select(OutboxRow.event_id).where(col(OutboxRow.event_id).in_(ids)))).all())
    fresh = [e for e in staged if str(e.event_id) not in already]
    for envelope in fresh:
        stage(session, envelope, ctx.streams.ingress(SCHEDULER))
    if fresh:
        log.info("deadlines.due", published=len(fresh), cases=len(rows))
    return len(fresh)
