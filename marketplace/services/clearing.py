"""A clearing round of one care area's book, as the matcher worker runs it.

The open book is read from the database (offers with capacity left, cases on the book), cleared
by the pure solver, and the outcome (holds, capacity taken, case states, events) is written in the
caller's transaction. One matcher per care area at a time writes here, so a slot is never held twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import (
    ClearingRoundCompleted,
    ClearingRoundRequested,
    Envelope,
    MatchProposed,
    PatientNotPlaced,
    new_envelope,
)
from events.envelope import stable_event_id
from marketplace.adapters.orm import (
    AgreementRow,
    CaseRow,
    ClearingRoundRow,
    MatchRow,
    OfferRow,
    PlacementRow,
    RequestRow,
)
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import ProposeMatch
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import fresh_events
from marketplace.services.lifecycle import CaseLedger
from matchers.clearing import clear
from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.reference import default_tariff

CONSUMER = "matcher"
log = structlog.get_logger(__name__)


async def load_book(session: AsyncSession, care_area: str, as_of: date) -> Scenario:
    offers = (await session.exec(
        select(OfferRow).where(OfferRow.care_area == care_area, OfferRow.status == "open",
                               col(OfferRow.remaining) > 0).order_by(col(OfferRow.offer_id)))).all()
    requests = (await session.exec(
        select(RequestRow).where(RequestRow.care_area == care_area, RequestRow.status == "open")
        .order_by(col(RequestRow.request_id)))).all()
    cases = (await session.exec(
        select(CaseRow).where(CaseRow.care_area == care_area, CaseRow.state == "on_book")
        .order_by(col(CaseRow.case_ref)))).all()
    agreements = (await session.exec(select(AgreementRow).where(AgreementRow.care_area == care_area))).all()
    by_request: dict[str, list[Patient]] = {}
    for case in cases:
        by_request.setdefault(case.request_id, []).append(
            Patient(case.case_ref, case.waiting_since, frozenset(case.excluded_offers)))
    return Scenario(
        name=f"book:{care_area}",
        as_of=as_of,
        agreements=tuple(Agreement(a.purchaser, a.provider, a.care_area) for a in agreements),
        offers=tuple(Offer(o.offer_id, o.region, o.unit_hsa_id, o.care_area, o.remaining, o.window_start,
                           o.window_end, o.price_sek) for o in offers),
        requests=tuple(
            Request(r.request_id, r.region, r.care_area, r.window_start, r.window_end, r.max_price_sek,
                    r.max_travel_km, tuple(r.excluded_regions), r.requires_agreement,
                    tuple(by_request[r.request_id]))
            for r in requests if r.request_id in by_request
        ),
    )


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    """The matcher's share of a book partition: the clearing rounds asked for, in order."""
    for envelope, payload in await fresh_events(session, CONSUMER, items):
        if isinstance(payload, ClearingRoundRequested):
            structlog.contextvars.bind_contextvars(event_id=str(envelope.event_id),
                                                   correlation_id=envelope.correlation_id,
                                                   round_id=payload.round_id)
            try:
                await run_round(session, envelope, payload, ctx)
            finally:
                structlog.contextvars.unbind_contextvars("event_id", "correlation_id", "round_id")


async def run_round(session: AsyncSession, envelope: Envelope, cmd: ClearingRoundRequested,
                    ctx: ServiceContext) -> ClearingRoundRow | None:
    """Clear the book once; None when this round was already run (the same round asked twice)."""
    if await session.get(ClearingRoundRow, cmd.round_id) is not None:
        return None
    streams = ctx.streams
    started = time.perf_counter()
    book = await load_book(session, cmd.care_area, cmd.as_of)
    allocation = clear(book, cmd.policy)
    requests = {r.request_id: r for r in book.requests}
    offers = {o.offer_id: o for o in book.offers}
    cases = {c.case_ref: c for c in (await session.exec(
        select(CaseRow).where(CaseRow.care_area == cmd.care_area, CaseRow.state == "on_book"))).all()}
    taken: dict[str, int] = {}
    corr = envelope.correlation_id
    ledger = CaseLedger(session, ctx)
    await ledger.load(p.case_ref for p in allocation.placements if p.offer_id is not None)
    tariff = default_tariff()

    def emit(payload: MatchProposed | PatientNotPlaced | ClearingRoundCompleted,
             stream: str, *key: object) -> None:
        stage(session, new_envelope(payload, producer=CONSUMER, correlation_id=corr,
                                    event_id=stable_event_id(cmd.round_id, *key)), stream)

    for p in allocation.placements:
        request = requests[p.request_id]
        session.add(PlacementRow(round_id=cmd.round_id, case_ref=p.case_ref, request_id=p.request_id,
                                 offer_id=p.offer_id, reason=p.reason, cost_sek=p.cost_sek,
                                 distance_km=p.distance_km, wait_days=p.wait_days))
        case = cases[p.case_ref]
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
        session.add(MatchRow(**match.model_dump(exclude={"round_id"}), round_id=cmd.round_id))
        case.last_reason = None
        session.add(case)
        # The ancillary cost is travel plus, beyond the threshold, a night's stay (the tariff's split).
        far = p.distance_km > tariff.overnight_threshold_km
        nights = tariff.nights_when_over_threshold * tariff.night_sek if far else 0
        await ledger.apply(ProposeMatch(
            p.case_ref, match_id=match_id, offer_id=offer.offer_id, providing_region=offer.region,
            unit_hsa_id=offer.unit_hsa_id, price_sek=Decimal(str(offer.price_sek)),
            travel_sek=Decimal(str(round(p.ancillary_cost_sek - nights, 2))), accommodation_sek=Decimal(nights),
            distance_km=p.distance_km, command_id=stable_event_id(cmd.round_id, "propose", p.case_ref),
        ), correlation_id=corr, producer=CONSUMER)
        emit(match, streams.matches, "match", p.case_ref)

    for offer_id, count in taken.items():
        row = await session.get(OfferRow, offer_id)
        assert row is not None and row.remaining >= count, f"offer {offer_id} over capacity"
        row.remaining -= count
        session.add(row)

    seconds = time.perf_counter() - started
    summary = ClearingRoundRow(
        round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of, policy=cmd.policy,
        patients=allocation.patients, placed=allocation.placed, wait_days=allocation.wait_days,
        cost_sek=allocation.total_cost_sek, seconds=seconds)
    session.add(summary)
    emit(ClearingRoundCompleted(round_id=cmd.round_id, care_area=cmd.care_area, as_of=cmd.as_of,
                                patients=allocation.patients, placed=allocation.placed,
                                wait_days=allocation.wait_days, cost_sek=allocation.total_cost_sek),
         streams.matches, "completed")
    log.info("clearing.completed", round_id=cmd.round_id, care_area=cmd.care_area,
             patients=allocation.patients, placed=allocation.placed, seconds=round(seconds, 3))
    return summary
