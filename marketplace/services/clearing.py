"""A clearing round of one care area's book, as the matcher worker runs it.

Read, decide, write: the open book is read once (adapters/book.py: offers with capacity left,
cases on the book, their requests; and the agreements in force), cleared by the pure solver, the
matches decided by the pure lifecycle (`decide_round`, an `Outcome` of plain values), and that
outcome (holds, capacity taken, case states, events) written once in the caller's transaction.
One matcher per care area at a time writes here, so a slot is never held twice.

A continuous round (the auto-clearer's) is incremental: it reads only the part of the book that
a round of the whole book could change (`book.read_placeable`, then `matchers.incremental.
placeable_part`): the offers with room, the cases no round has read yet, and the cases that may
take an offer with room. A case left out may take no offer with room, so no allocation of the
whole book places it: the round's optimum is the whole book's (the proof is in `placeable_part`).
And since each round places everyone it can, the offers left with room are the ones nobody waiting
may take: until an offer is published, a slot given back or a case put on the book, a round reads
next to nothing, however many cases wait that nothing can place. An explicit round
(`ClearingRoundRequested`) still reads the whole book and records every case's outcome.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events import (
    ClearingRoundCompleted,
    ClearingRoundRequested,
    Envelope,
    MatchProposed,
    PatientNotPlaced,
    new_envelope,
)
from events.bounds import MAX_CAPACITY, MAX_PRICE_SEK, MAX_TRAVEL_KM, date_window
from events.envelope import stable_event_id
from events.identifiers import is_identifier, safe_token
from marketplace.adapters import book, slots
from marketplace.adapters.orm import ClearingRoundRow
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import Command, ProposeMatch
from marketplace.lifecycle.states import CaseStatus
from marketplace.services.agreements import in_force
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events, unprocessed
from marketplace.services.lifecycle import CaseLedger, Step, snapshot_values, touched
from matchers.allocation import Allocation
from matchers.clearing import clear
from matchers.geo import ancillary_split
from matchers.incremental import placeable_part
from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.reference import default_tariff, regions

CONSUMER = "matcher"
log = structlog.get_logger(__name__)


@dataclass
class OpenBook:
    """The open book of a care area as the solver sees it, with the reason each of its cases was
    last left unplaced (None: it was not). `left_out` counts, per rule, the items the round could
    not use."""

    scenario: Scenario
    last_reasons: dict[str, str | None]
    left_out: dict[str, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """What a round decided, as plain values, before anything of it is written: each patient's
    placement, the matches proposed (with the lifecycle's steps for their cases), the slots taken
    of each offer, the cases' new columns and the round's own events, in the order they are staged."""

    placements: list[dict[str, Any]]
    matches: list[MatchProposed]
    steps: list[Step]
    taken: dict[str, int]
    cases: dict[str, dict[str, Any]]
    reasons: dict[str, dict[str, Any]]
    not_placed: list[PatientNotPlaced]
    completed: ClearingRoundCompleted
    summary: ClearingRoundRow


def _bad_number(value: Any, low: float, high: float) -> bool:
    return not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or not (
        low <= value <= high)


def _bad_date(value: Any) -> bool:
    first, last = date_window()
    return not isinstance(value, date) or not first <= value <= last


def _unusable_offer(r: Any) -> str | None:
    """The rule an open offer row breaks that the round cannot work with (intake refuses all of
    these; a row written past it, or by an older version, is left out rather than fail the round)."""
    if not isinstance(r.offer_id, str) or not is_identifier(r.offer_id):
        return "offer_id"
    if _bad_number(r.remaining, 1, MAX_CAPACITY) or not isinstance(r.remaining, int):
        return "capacity"
    if _bad_number(r.price_sek, 0, MAX_PRICE_SEK):
        return "price_sek"
    if _bad_date(r.window_start) or _bad_date(r.window_end) or r.window_end < r.window_start:
        return "window"
    if r.region not in regions():
        return "region"
    return None


def _unusable_request(r: Any) -> str | None:
    if not is_identifier(r.request_id):
        return "request_id"
    if _bad_date(r.window_start) or _bad_date(r.window_end) or r.window_end < r.window_start:
        return "window"
    if r.max_price_sek is not None and _bad_number(r.max_price_sek, 0, MAX_PRICE_SEK):
        return "max_price_sek"
    if r.max_travel_km is not None and _bad_number(r.max_travel_km, 0, MAX_TRAVEL_KM):
        return "max_travel_km"
    if r.region not in regions() or not isinstance(r.excluded_regions, list) or any(
            c not in regions() for c in r.excluded_regions):
        return "region"
    return None


def _unusable_case(c: Any) -> str | None:
    if not is_identifier(c.case_ref):
        return "case_ref"
    if _bad_date(c.waiting_since):
        return "waiting_since"
    if not isinstance(c.excluded_offers, list):
        return "excluded_offers"
    return None


def _leave_out(left_out: dict[str, int], kind: str, ident: Any, rule: str, care_area: str) -> None:
    key = f"{kind}.{rule}"
    left_out[key] = left_out.get(key, 0) + 1
    # The id is logged only when it has the bus's safe shape: a row written past intake may hold anything.
    shown = ident if isinstance(ident, str) and is_identifier(ident) else None
    log.warning("clearing.item_left_out", care_area=care_area, kind=kind, id=shown, rule=rule)


async def read_book(session: AsyncSession, care_area: str, as_of: date, *, placeable: bool = False) -> OpenBook:
    """The round's first read: the open book of `care_area`, with the agreements in force `as_of`;
    with `placeable`, only its part a round can change (see the module docstring)."""
    on_book = CaseStatus.ON_BOOK.value
    rows = await (book.read_placeable(session, care_area, on_book, as_of) if placeable
                  else book.read(session, care_area, on_book))
    # Only agreements registered and inside their validity on the round's day count ("requires
    # agreement"): one that ended on or before it no longer allows a match.
    open_ = open_book(rows, await in_force(session, care_area, as_of), care_area, as_of)
    if not placeable:
        return open_
    # The statement asks the rules it can; the rest (travel, excluded regions and offers,
    # agreements) are asked here, so the solver sees only patients it may place or must tell why not.
    fresh = {ref for ref, reason in open_.last_reasons.items() if reason is None}
    part = placeable_part(open_.scenario, fresh)
    kept = {p.case_ref for r in part.requests for p in r.patients}
    return replace(open_, scenario=part,
                   last_reasons={ref: why for ref, why in open_.last_reasons.items() if ref in kept})


def open_book(rows: book.BookRows, agreements: tuple[Agreement, ...], care_area: str, as_of: date) -> OpenBook:
    """The solver's view of the stored book, without the items it could not use."""
    left_out: dict[str, int] = {}
    offers = []
    for offer in rows.offers:
        if (rule := _unusable_offer(offer)) is not None:
            _leave_out(left_out, "offer", offer.offer_id, rule, care_area)
        else:
            offers.append(offer)
    cases = []
    for case in rows.cases:
        if (rule := _unusable_case(case)) is not None:
            _leave_out(left_out, "case", case.case_ref, rule, care_area)
        else:
            cases.append(case)
    wanted = {c.request_id for c in cases}
    requests = []
    for request in rows.requests:
        if request.request_id not in wanted:
            continue  # only its unusable cases are on the book
        if (rule := _unusable_request(request)) is not None:
            _leave_out(left_out, "request", request.request_id, rule, care_area)
        else:
            requests.append(request)
    by_request: dict[str, list[Patient]] = {}
    for case in cases:
        by_request.setdefault(case.request_id, []).append(
            Patient(case.case_ref, case.waiting_since, frozenset(case.excluded_offers)))
    scenario = Scenario(
        name=f"book:{care_area}",
        as_of=as_of,
        agreements=agreements,
        offers=tuple(Offer(r.offer_id, r.region, r.unit_hsa_id, r.care_area, r.remaining, r.window_start,
                           r.window_end, r.price_sek) for r in offers),
        requests=tuple(
            Request(r.request_id, r.region, r.care_area, r.window_start, r.window_end, r.max_price_sek,
                    r.max_travel_km, tuple(r.excluded_regions), r.requires_agreement,
                    tuple(by_request[r.request_id]))
            for r in requests if r.request_id in by_request
        ),
    )
    kept = {r.request_id for r in requests}
    return OpenBook(scenario, {c.case_ref: c.last_reason for c in cases if c.request_id in kept}, left_out)


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext,
                       fence: Callable[[AsyncSession], Awaitable[None]] | None = None) -> None:
    """The matcher's share of a book partition: the clearing rounds asked for, in order. Offers and
    requests on the book stream only wake the auto-clearer (workers/autoclear.py), which reads the
    book from the database: they need no inbox record of their own, and a batch of nothing else
    writes nothing. `fence` (the partition's writer check) runs before the first write."""
    rounds = [(e, p) for e, p in trusted_events(items) if isinstance(p, ClearingRoundRequested)]
    if not rounds:
        return
    if fence is not None:
        await fence(session)
    for envelope, payload in await unprocessed(session, CONSUMER, rounds):
        if isinstance(payload, ClearingRoundRequested):
            structlog.contextvars.bind_contextvars(event_id=str(envelope.event_id),
                                                   correlation_id=envelope.correlation_id,
                                                   round_id=payload.round_id)
            try:
                await run_round(session, envelope, payload, ctx)
            finally:
                structlog.contextvars.unbind_contextvars("event_id", "correlation_id", "round_id")


async def run_continuous_round(session: AsyncSession, ctx: ServiceContext, care_area: str, as_of: date,
                               policy: str) -> str | None:
    """The auto-clearer's incremental round of `care_area` if a case on its book may be placed or
    was never read by a round; its round id, or None (then nothing is written)."""
    started = time.perf_counter()
    with session.no_autoflush:
        open_ = await read_book(session, care_area, as_of, placeable=True)
    if not open_.scenario.requests:
        return None
    round_id = f"rnd-{safe_token(uuid.uuid4().bytes, 16)}"
    cmd = ClearingRoundRequested(round_id=round_id, care_area=care_area, as_of=as_of, policy=policy)
    await run_round(session, new_envelope(cmd, producer=CONSUMER), cmd, ctx, continuous=True, read=(open_, started))
    return round_id


async def run_round(session: AsyncSession, envelope: Envelope, cmd: ClearingRoundRequested,
                    ctx: ServiceContext, *, continuous: bool = False,
                    read: tuple[OpenBook, float] | None = None) -> ClearingRoundRow | None:
    """Clear the book once; None when this round was already run (the same round asked twice).

    A round asked for explicitly records every patient's outcome. A `continuous` round (the
    auto-clearer's, many a second) records the placements, but a patient left unplaced only when
    the reason changed: the same "not placed" every few milliseconds would tell nobody anything
    and would grow the case's timeline without end.

    `read`: the book as the caller read it, and when it started reading (a continuous round).

    Read, decide, write: the book is read once, and after the solve the timelines of the cases it
    placed (known only then); the solver and the lifecycle decide without I/O; what they decided
    is written once, at the end, so on SQLite the write lock is held only that long.
    """
    if read is None and await book.round_recorded(session, cmd.round_id):
        return None
    with session.no_autoflush:
        if read is None:
            started = time.perf_counter()
            open_ = await read_book(session, cmd.care_area, cmd.as_of)
        else:
            open_, started = read  # a continuous round's part of the book (its round id is new)
        allocation = clear(open_.scenario, cmd.policy)
        ledger = CaseLedger(session, ctx)
        # The snapshots are written here, from the states, so the ledger reads the timelines only.
        await ledger.load((p.case_ref for p in allocation.placements if p.offer_id is not None), rows=False)
        outcome = decide_round(cmd, open_, allocation, ledger, ctx, continuous=continuous)
        await _write(session, envelope, cmd, ctx, outcome, ledger)
    outcome.summary.seconds = time.perf_counter() - started
    log.info("clearing.completed", round_id=cmd.round_id, care_area=cmd.care_area,
             patients=allocation.patients, placed=allocation.placed, seconds=round(outcome.summary.seconds, 3))
    return outcome.summary


def decide_round(cmd: ClearingRoundRequested, open_: OpenBook, allocation: Allocation, ledger: CaseLedger,
                 ctx: ServiceContext, *, continuous: bool) -> Outcome:
    """What the round's allocation means for the book, its cases and the bus (no I/O: the cases
    placed are loaded in `ledger`). Raises the lifecycle's DomainError when it refuses a match."""
    requests = {r.request_id: r for r in open_.scenario.requests}
    offers = {o.offer_id: o for o in open_.scenario.offers}
    now = ctx.clock()
    tariff = default_tariff()
    placements: list[dict[str, Any]] = []
    taken: dict[str, int] = {}
    proposals: list[Command] = []
    matches: list[MatchProposed] = []
    reasons: dict[str, dict[str, Any]] = {}
    not_placed: list[PatientNotPlaced] = []
    for p in allocation.placements:
        request = requests[p.request_id]
        last_reason = open_.last_reasons[p.case_ref]
        if continuous and p.offer_id is None and last_reason == p.reason:
            continue
        placements.append({"round_id": cmd.round_id, "case_ref": p.case_ref, "request_id": p.request_id,
                           "offer_id": p.offer_id, "reason": p.reason, "cost_sek": p.cost_sek,
                           "distance_km": p.distance_km, "wait_days": p.wait_days})
        if p.offer_id is None:
            if last_reason != p.reason:
                reasons[p.case_ref] = {"last_reason": p.reason}
            not_placed.append(PatientNotPlaced(round_id=cmd.round_id, case_ref=p.case_ref, request_id=p.request_id,
                                               care_area=cmd.care_area, requesting_region=request.region,
                                               reason=p.reason or "capacity_exhausted"))
            continue
        offer = offers[p.offer_id]
        taken[offer.offer_id] = taken.get(offer.offer_id, 0) + 1
        match_id = str(stable_event_id("match", cmd.round_id, p.case_ref))
        matches.append(MatchProposed(
            match_id=match_id, round_id=cmd.round_id, case_ref=p.case_ref, request_id=p.request_id,
            offer_id=offer.offer_id, care_area=cmd.care_area, requesting_region=request.region,
            providing_region=offer.region, unit_hsa_id=offer.unit_hsa_id, price_sek=offer.price_sek,
            ancillary_cost_sek=p.ancillary_cost_sek, distance_km=p.distance_km, wait_days=p.wait_days,
        ))
        travel, stay = ancillary_split(p.ancillary_cost_sek, p.distance_km, tariff)
        proposals.append(ProposeMatch(
            p.case_ref, match_id=match_id, offer_id=offer.offer_id, providing_region=offer.region,
            unit_hsa_id=offer.unit_hsa_id, price_sek=Decimal(str(offer.price_sek)),
            travel_sek=travel, accommodation_sek=stay,
            distance_km=p.distance_km, command_id=stable_event_id(cmd.round_id, "propose", p.case_ref),
        ))
    steps = ledger.decide_all(proposals)
    return Outcome(
        placements=placements, matches=matches, steps=steps, taken=taken,
        cases={state.case_ref: {**snapshot_values(state, ctx), "last_reason": None} for state in touched(steps)},
        reasons=reasons, not_placed=not_placed,
        completed=ClearingRoundCompleted(round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of,
                                         patients=allocation.patients, placed=allocation.placed,
                                         wait_days=allocation.wait_days, cost_sek=allocation.total_cost_sek,
                                         left_out=open_.left_out),
        summary=ClearingRoundRow(round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of,
                                 policy=cmd.policy, patients=allocation.patients, placed=allocation.placed,
                                 wait_days=allocation.wait_days, cost_sek=allocation.total_cost_sek, seconds=0.0,
                                 completed_at=now),
    )


async def _write(session: AsyncSession, envelope: Envelope, cmd: ClearingRoundRequested, ctx: ServiceContext,
                 outcome: Outcome, ledger: CaseLedger) -> None:
    """Write what the round decided. Capacity first (it may find another writer took it: then
    nothing of the round is written) and the cases' columns now; the rest is appended and written
    in bulk at the commit, the outbox in the order staged here."""
    await slots.take(session, outcome.taken)
    await book.update_cases(session, outcome.cases)
    await book.update_cases(session, outcome.reasons)
    book.place(session, outcome.placements)
    now = ctx.clock()
    for match in outcome.matches:
        slots.propose(session, match, now)

    def emit(payload: MatchProposed | PatientNotPlaced | ClearingRoundCompleted, *key: object) -> None:
        stage(session, new_envelope(payload, producer=CONSUMER, correlation_id=envelope.correlation_id,
                                    event_id=stable_event_id(cmd.round_id, *key)), ctx.streams.matches)

    for not_placed in outcome.not_placed:
        emit(not_placed, "not_placed", not_placed.case_ref)
    await ledger.record(outcome.steps, correlation_id=envelope.correlation_id, producer=CONSUMER)
    for match in outcome.matches:
        emit(match, "match", match.case_ref)
    emit(outcome.completed, "completed")
    session.add(outcome.summary)
