"""Carrying cases through their lifecycle inside a transaction.

The pure rules (`marketplace.lifecycle`) decide; this module keeps their consequences together:
the decided events go onto the case's hash-chained event stream at the case's version (the truth:
a case's state is its stream replayed), the `cases` row is updated as a queryable snapshot, a released
hold gives its slot back to the offer, and every event is mirrored on the bus as `case.state_changed`
(on `cases`, and on the feeds of the regions it concerns: `case_feed`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC
from typing import Any, NamedTuple

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import CaseStateChanged, new_envelope
from marketplace.adapters import slots
from marketplace.adapters.appends import append_when_written
from marketplace.adapters.orm import CaseRow
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import (
    CaseEvent,
    CaseState,
    Chain,
    Command,
    HoldExpired,
    HoldReleased,
    ProviderAcceptedMatch,
    ProviderDeclinedMatch,
    change_reason,
    decide,
    event_payload,
    evolve,
    next_deadline,
    replay_timeline,
)
from marketplace.services.case_feed import stage_feeds
from marketplace.services.context import ServiceContext
from marketplace.services.timeline import ChainAppender, to_entry

CASES = CaseRow.__table__  # type: ignore[attr-defined]

# What a match row says once the case's hold on it has been answered or let go.
_MATCH_STATUS: dict[type[CaseEvent], str] = {
    ProviderAcceptedMatch: "accepted",
    ProviderDeclinedMatch: "declined",
    HoldExpired: "expired",
}


class CaseLedger:
    """The cases one transaction touches: their states and timelines, each read once."""

    def __init__(self, session: AsyncSession, ctx: ServiceContext) -> None:
        self.session = session
        self.ctx = ctx
        self.timeline = ChainAppender(session, Chain.EVENTS, key=ctx.timeline_key)
        self.states: dict[str, CaseState | None] = {}
        self.rows: dict[str, CaseRow] = {}
        # Snapshots of cases created in this transaction: pending (values), and written already.
        self._new: dict[str, dict[str, Any]] = {}
        self._written: set[str] = set()

    async def load(self, case_refs: Iterable[str], *, rows: bool = True) -> None:
        """Read the timelines and snapshots of `case_refs`, all of them in two queries (the
        timelines alone with `rows=False`, for a caller that writes the snapshots itself from
        `snapshot_values`: `apply` must then not be used on those cases)."""
        refs = [r for r in set(case_refs) if r not in self.states]
        if not refs:
            return
        entries: dict[str, list[Any]] = defaultdict(list)
        for row in await self.timeline.load(refs):
            entries[row.case_ref].append(to_entry(row))
        unread = [r for r in refs if r not in self.rows]
        if rows and unread:
            snapshots = await self.session.exec(select(CaseRow).where(col(CaseRow.case_ref).in_(unread)))
            self.adopt(snapshots.all())
        for ref in refs:
            self.states[ref] = replay_timeline(entries[ref]) if entries[ref] else None

    def adopt(self, rows: Iterable[CaseRow]) -> None:
        """Snapshots the caller has read already (in this session), so `load` need not read them."""
        self.rows.update((row.case_ref, row) for row in rows)

    async def state(self, case_ref: str) -> CaseState | None:
        await self.load([case_ref])
        return self.states[case_ref]

    async def apply(self, command: Command, *, correlation_id: str, producer: str) -> list[CaseEvent]:
        """Decide `command` against the case as it stands and record everything that follows.

        Raises `marketplace.lifecycle.DomainError` (nothing recorded) when the rules refuse it.
        """
        return await self.apply_all([command], correlation_id=correlation_id, producer=producer)

    async def apply_all(self, commands: Iterable[Command], *, correlation_id: str,
                        producer: str) -> list[CaseEvent]:
        """`apply` each command in turn, each against its case as the ones before it left it. All
        are decided before anything is recorded (a refused one leaves nothing behind); the snapshot
        of every case touched is written once, at the end."""
        commands = list(commands)
        await self.load(command.case_ref for command in commands)
        steps = self.decide_all(commands)
        await self.record(steps, correlation_id=correlation_id, producer=producer)
        for state in touched(steps):
            await self._snapshot(state)
        return [step.event for step in steps]

    def decide_all(self, commands: Iterable[Command]) -> list[Step]:
        """What the rules make of `commands` on the loaded cases, each against its case as the ones
        before it left it; nothing is recorded. Raises `DomainError` as `apply` does."""
        states: dict[str, CaseState | None] = {}
        steps: list[Step] = []
        for command in commands:
            ref = command.case_ref
            state = states[ref] if ref in states else self.states[ref]  # loaded (KeyError: it was not)
            for event in decide(state, command, self.ctx.clock(), self.ctx.policy):
                previous, state = state, evolve(state, event)
                steps.append(Step(previous, state, event))
            states[ref] = state
        return steps

    async def record(self, steps: Iterable[Step], *, correlation_id: str, producer: str) -> None:
        """The decided `steps` on the timelines, the bus and the book (not the cases' snapshots)."""
        ends: list[tuple[str, str]] = []
        returned: dict[str, int] = {}
        for previous, state, event in steps:
            self.timeline.add(state.case_ref, event.event_id, event.TYPE, event.occurred_at, event_payload(event),
                              version=state.version)
            mirrored = _mirror(previous, state, event)
            envelope = new_envelope(mirrored, producer=producer, correlation_id=correlation_id,
                                    event_id=event.event_id)
            stage(self.session, envelope, self.ctx.streams.cases)
            stage_feeds(self.session, self.ctx.streams, envelope, mirrored, previous, state)
            if isinstance(event, HoldReleased):
                ends.append((event.match_id, "released"))
                returned[event.offer_id] = returned.get(event.offer_id, 0) + 1
            elif type(event) in _MATCH_STATUS:
                ends.append((event.match_id, _MATCH_STATUS[type(event)]))  # type: ignore[attr-defined]
            self.states[state.case_ref] = state
        # The book's side of all of them, written with the transaction in at most two statements.
        slots.settle(self.session, ends, returned)

    async def _snapshot(self, state: CaseState) -> None:
        row = self.rows.get(state.case_ref)  # every case applied to was loaded, its row with it
        values = snapshot_values(state, self.ctx)
        ref = state.case_ref
        if row is None and ref in self._new:
            self._new[ref].update(values)  # created in this transaction and not written yet
            return
        if row is None and ref in self._written:
            row = self.rows[ref] = await self.session.get_one(CaseRow, ref)
        if row is None:
            # A new case is inserted in bulk with the batch's other rows (adapters/appends.py),
            # as its snapshot stands then: building an ORM object per case costs more.
            if not self._new:
                append_when_written(self.session, CASES, self._take_new)
            self._new[ref] = {"case_ref": ref, "request_id": state.request_id, "region": state.home_region,
                              "care_area": state.care_area, "waiting_since": state.waiting_since,
                              "last_reason": None, **values}
            return
        for name, value in values.items():
            if getattr(row, name) != value:  # an assignment through the ORM costs more than the check
                setattr(row, name, value)
        self.session.add(row)

    def _take_new(self) -> list[dict[str, Any]]:
        rows, self._new = list(self._new.values()), {}
        self._written.update(row["case_ref"] for row in rows)
        return rows


class Step(NamedTuple):
    """One decided event, with its case's state before and after it."""

    previous: CaseState | None
    state: CaseState
    event: CaseEvent


def touched(steps: Iterable[Step]) -> list[CaseState]:
    """Each case's state after the last of `steps` on it, in the order the cases were first touched."""
    return list({step.state.case_ref: step.state for step in steps}.values())


def snapshot_values(state: CaseState, ctx: ServiceContext) -> dict[str, Any]:
    """The columns of a case's `cases` row that its state decides (the queryable snapshot)."""
    due = next_deadline(state, ctx.policy)
    return {
        "state": state.status.value, "version": state.version, "excluded_offers": sorted(state.excluded_offer_ids),
        "current_match_id": state.match.match_id if state.match is not None and state.slot_reserved else None,
        # In UTC: SQLite keeps a timestamp's wall time and drops its zone, and sweeps compare in UTC.
        "guarantee_date": state.guarantee_date,
        "next_deadline_at": due.due_at.astimezone(UTC) if due is not None else None,
        "updated_at": ctx.clock(),
    }


def _mirror(before: CaseState | None, after: CaseState, event: CaseEvent) -> CaseStateChanged:
    return CaseStateChanged(
        case_ref=after.case_ref, from_state=before.status.value if before else None,
        to_state=after.status.value, reason=change_reason(event), version=after.version,
        event_type=event.TYPE, details=_details(event_payload(event)),
    )


def _details(payload: dict[str, Any]) -> dict[str, str | int | float | bool | None]:
    """Scalars of the event, nested ones (the locked match) lifted one level."""
    flat: dict[str, str | int | float | bool | None] = {}
    for key, value in payload.items():
        if isinstance(value, dict):
            flat.update({k: v for k, v in value.items() if isinstance(v, str | int | float | bool | None)})
        elif isinstance(value, str | int | float | bool | None):
            flat[key] = value
    return flat


async def apply_command(session: AsyncSession, command: Command, ctx: ServiceContext, *, correlation_id: str,
                        producer: str) -> list[CaseEvent]:
    """One command on one case (see `CaseLedger.apply`)."""
    return await CaseLedger(session, ctx).apply(command, correlation_id=correlation_id, producer=producer)


async def load_case(session: AsyncSession, case_ref: str, ctx: ServiceContext | None = None) -> CaseState | None:
    from events import Streams

    ledger = CaseLedger(session, ctx or ServiceContext(streams=Streams()))
    return await ledger.state(case_ref)
