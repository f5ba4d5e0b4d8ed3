"""A clearing round of one care area's book, as the matcher worker runs it.

The open book is read from the database (offers with capacity left, cases on the book), cleared
by the pure solver, and the outcome (holds, capacity taken, case states, events) is written in the
caller's transaction. One matcher per care area at a time writes here, so a slot is never held twice.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select as core_select
from sqlmodel import col, func, select
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
from marketplace.adapters import slots
from marketplace.adapters.appends import append
from marketplace.adapters.orm import (
    CaseRow,
    ClearingRoundRow,
    OfferRow,
    PlacementRow,
    RequestRow,
)
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import Command, ProposeMatch
from marketplace.lifecycle.states import CaseStatus
from marketplace.services.agreements import in_force
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events, unprocessed
from marketplace.services.lifecycle import CaseLedger
from matchers.allocation import Allocation
from matchers.clearing import clear
from matchers.geo import ancillary_split
from matchers.model import Offer, Patient, Request, Scenario
from matchers.reference import default_tariff, regions

CONSUMER = "matcher"
OFFERS = OfferRow.__table__  # type: ignore[attr-defined]
PLACEMENTS = PlacementRow.__table__  # type: ignore[attr-defined]
log = structlog.get_logger(__name__)


@dataclass
class OpenBook:
    """The open book of a care area as the solver sees it, with the rows of its cases (kept here
    because the session holds them only weakly, and the round writes to them). `left_out` counts,
    per rule, the items the round could not use."""

    scenario: Scenario
    cases: dict[str, CaseRow]
    left_out: dict[str, int] = field(default_factory=dict)


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


def _unusable_request(r: RequestRow) -> str | None:
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


def _unusable_case(c: CaseRow) -> str | None:
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


async def load_book(session: AsyncSession, care_area: str, as_of: date) -> OpenBook:
    # Plain rows: every open offer of the area is read each round, and none is changed through them.
    o = OFFERS.c
    connection = await session.connection()
    offers = (await connection.execute(
        core_select(o.offer_id, o.region, o.unit_hsa_id, o.care_area, o.remaining, o.window_start, o.window_end,
                    o.price_sek)
        .where(o.care_area == care_area, o.status == "open", o.remaining > 0).order_by(o.offer_id))).all()
    left_out: dict[str, int] = {}
    usable_offers = []
    for offer in offers:
        if (rule := _unusable_offer(offer)) is not None:
            _leave_out(left_out, "offer", offer.offer_id, rule, care_area)
        else:
            usable_offers.append(offer)
    offers = usable_offers
    on_book = select(CaseRow).where(CaseRow.care_area == care_area, CaseRow.state == CaseStatus.ON_BOOK.value)
    cases = []
    for case in (await session.exec(on_book.order_by(col(CaseRow.case_ref)))).all():
        if (rule := _unusable_case(case)) is not None:
            _leave_out(left_out, "case", case.case_ref, rule, care_area)
        else:
            cases.append(case)
    # Only the requests with a patient still on the book: the others are settled and would only
    # make every round slower than the last.
    requests = (await session.exec(
        select(RequestRow).where(col(RequestRow.request_id).in_({c.request_id for c in cases}),
                                 RequestRow.status == "open")
        .order_by(col(RequestRow.request_id)))).all() if cases else []
    usable_requests = []
    for request in requests:
        if (rule := _unusable_request(request)) is not None:
            _leave_out(left_out, "request", request.request_id, rule, care_area)
        else:
            usable_requests.append(request)
    requests = usable_requests
    # Only agreements registered and inside their validity on the round's day count ("requires
    # agreement"): one that ended on or before it no longer allows a match.
    agreements = await in_force(session, care_area, as_of)
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
    kept = {c.case_ref: c for c in cases if c.request_id in {r.request_id for r in requests}}
    return OpenBook(scenario, kept, left_out)


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
    """The auto-clearer's round of `care_area` if any case waits on its book; its round id, or None."""
    waiting = (await session.exec(select(func.count()).select_from(CaseRow).where(
        col(CaseRow.care_area) == care_area, col(CaseRow.state) == CaseStatus.ON_BOOK.value))).one()
    if not waiting:
        return None
    round_id = f"rnd-{safe_token(uuid.uuid4().bytes, 16)}"
    cmd = ClearingRoundRequested(round_id=round_id, care_area=care_area, as_of=as_of, policy=policy)
    await run_round(session, new_envelope(cmd, producer=CONSUMER), cmd, ctx, continuous=True)
    return round_id


async def run_round(session: AsyncSession, envelope: Envelope, cmd: ClearingRoundRequested,
                    ctx: ServiceContext, *, continuous: bool = False) -> ClearingRoundRow | None:
    """Clear the book once; None when this round was already run (the same round asked twice).

    A round asked for explicitly records every patient's outcome. A `continuous` round (the
    auto-clearer's, many a second) records the placements, but a patient left unplaced only when
    the reason changed: the same "not placed" every few milliseconds would tell nobody anything
    and would grow the case's timeline without end.
    """
    if await session.get(ClearingRoundRow, cmd.round_id) is not None:
        return None
    started = time.perf_counter()
    # Read everything first and write at the end: on SQLite the write lock is held only that long.
    with session.no_autoflush:
        book = await load_book(session, cmd.care_area, cmd.as_of)
        allocation = clear(book.scenario, cmd.policy)
        ledger = CaseLedger(session, ctx)
        ledger.adopt(book.cases.values())  # read with the book: not read again
        await ledger.load(p.case_ref for p in allocation.placements if p.offer_id is not None)
        summary = await _record(session, envelope, cmd, ctx, book, allocation, ledger, continuous=continuous)
    summary.seconds = time.perf_counter() - started
    session.add(summary)
    log.info("clearing.completed", round_id=cmd.round_id, care_area=cmd.care_area,
             patients=allocation.patients, placed=allocation.placed, seconds=round(summary.seconds, 3))
    return summary


async def _record(session: AsyncSession, envelope: Envelope, cmd: ClearingRoundRequested, ctx: ServiceContext,
                  book: OpenBook, allocation: Allocation, ledger: CaseLedger, *,
                  continuous: bool) -> ClearingRoundRow:
    """Write what the round decided: holds, capacity taken, case states, and the events."""
    streams = ctx.streams
    requests = {r.request_id: r for r in book.scenario.requests}
    offers = {o.offer_id: o for o in book.scenario.offers}
    cases = book.cases
    taken: dict[str, int] = {}
    proposals: list[Command] = []
    matches: list[MatchProposed] = []
    corr = envelope.correlation_id
    tariff = default_tariff()

    def emit(payload: MatchProposed | PatientNotPlaced | ClearingRoundCompleted,
             stream: str, *key: object) -> None:
        stage(session, new_envelope(payload, producer=CONSUMER, correlation_id=corr,
                                    event_id=stable_event_id(cmd.round_id, *key)), stream)

    for p in allocation.placements:
        request = requests[p.request_id]
        case = cases[p.case_ref]
        if continuous and p.offer_id is None and case.last_reason == p.reason:
            continue
        append(session, PLACEMENTS, {"round_id": cmd.round_id, "case_ref": p.case_ref, "request_id": p.request_id,
                                     "offer_id": p.offer_id, "reason": p.reason, "cost_sek": p.cost_sek,
                                     "distance_km": p.distance_km, "wait_days": p.wait_days})
        if p.offer_id is None:
            case.last_reason = p.reason
            session.add(case)
            emit(PatientNotPlaced(round_id=cmd.round_id, case_ref=p.case_ref, request_id=p.request_id,
                                  care_area=cmd.care_area, requesting_region=request.region,
                                  reason=p.reason or "capacity_exhausted"),
                 streams.matches, "not_placed", p.case_ref)
            continue
        offer = offers[p.offer_id]
        taken[offer.offer_id] = taken.get(offer.offer_id, 0) + 1
        match_id = str(stable_event_id("match", cmd.round_id, p.case_ref))
        match = MatchProposed(
            match_id=match_id, round_id=cmd.round_id, case_ref=p.case_ref, request_id=p.request_id,
            offer_id=offer.offer_id, care_area=cmd.care_area, requesting_region=request.region,
            providing_region=offer.region, unit_hsa_id=offer.unit_hsa_id, price_sek=offer.price_sek,
            ancillary_cost_sek=p.ancillary_cost_sek, distance_km=p.distance_km, wait_days=p.wait_days,
        )
        slots.propose(session, match, ctx.clock())
        case.last_reason = None
        session.add(case)
        travel, stay = ancillary_split(p.ancillary_cost_sek, p.distance_km, tariff)
        proposals.append(ProposeMatch(
            p.case_ref, match_id=match_id, offer_id=offer.offer_id, providing_region=offer.region,
            unit_hsa_id=offer.unit_hsa_id, price_sek=Decimal(str(offer.price_sek)),
            travel_sek=travel, accommodation_sek=stay,
            distance_km=p.distance_km, command_id=stable_event_id(cmd.round_id, "propose", p.case_ref),
        ))
        matches.append(match)
    await ledger.apply_all(proposals, correlation_id=corr, producer=CONSUMER)
    for match in matches:
        emit(match, streams.matches, "match", match.case_ref)

    await slots.take(session, taken)

    emit(ClearingRoundCompleted(round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of,
                                patients=allocation.patients, placed=allocation.placed,
                                wait_days=allocation.wait_days, cost_sek=allocation.total_cost_sek,
                                left_out=book.left_out),
         streams.matches, "completed")
    return ClearingRoundRow(
        round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of, policy=cmd.policy,
        patients=allocation.patients, placed=allocation.placed, wait_days=allocation.wait_days,
        cost_sek=allocation.total_cost_sek, seconds=0.0, completed_at=ctx.clock())
