"""The free-capacity feed, projected from the marketplace's offers.

A projection consumer (group `capacity`, hosted by the timeline role) reads the accepted items of
every book partition, the match stream and the case stream. Whenever an offer of a unit is published
or withdrawn, a match takes one of its places or a released hold (declined, expired) gives one back,
the unit's report for that care area is worked out again from its open offers as stored (which the
event's own transaction already committed), so the windows are the same however often or in
whatever order the events arrive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import CaseStateChanged, MatchProposed, OfferPublished, OfferWithdrawn
from marketplace.adapters.database import Database
from marketplace.adapters.orm import OfferRow
from marketplace.adapters.waits_orm import UnitCapacityRow
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events
from marketplace.waiting_times.capacity import UnitReport, Window, report

CONSUMER = "capacity"
HOLD_RELEASED = "case.hold_released"
log = structlog.get_logger(__name__)


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    # (unit, care area) -> (region, event id, day, whether the unit itself spoke) of its newest event here
    touched: dict[tuple[str, str], tuple[str, str, date, bool]] = {}
    changed: dict[str, tuple[str, date, bool]] = {}  # offer id -> (event id, day, whether the unit spoke)
    # No inbox: the report is worked out from the stored offers, so an event seen twice changes nothing.
    for envelope, payload in trusted_events(items):
        day = envelope.occurred_at.date()
        eid = str(envelope.event_id)
        if isinstance(payload, OfferPublished):
            touched[(payload.unit_hsa_id, payload.care_area)] = (payload.region, eid, day, True)
        elif isinstance(payload, MatchProposed):
            key = (payload.unit_hsa_id, payload.care_area)
            if key not in touched:
                touched[key] = (payload.providing_region, eid, day, False)
        elif isinstance(payload, OfferWithdrawn):
            changed[payload.offer_id] = (eid, day, True)
        elif isinstance(payload, CaseStateChanged) and payload.event_type == HOLD_RELEASED:
            # A declined or expired hold gives its place back to the offer.
            offer_id = payload.details.get("offer_id")
            if isinstance(offer_id, str) and offer_id not in changed:
                changed[offer_id] = (eid, day, False)
    if changed:
        rows = (await session.exec(select(OfferRow).where(col(OfferRow.offer_id).in_(list(changed))))).all()
        for offer in rows:
            eid, day, reported = changed[offer.offer_id]
            key = (offer.unit_hsa_id, offer.care_area)
            if reported or key not in touched:
                touched[key] = (offer.region, eid, day, reported)
    if touched:
        await _project(session, touched)
        log.info("capacity.projected", units=len(touched))


async def _project(session: AsyncSession, touched: dict[tuple[str, str], tuple[str, str, date, bool]]) -> None:
    """Work the touched units' windows out again, reading their open offers and reports once.

    A report's date moves only when the unit itself published or withdrew an offer: a match taking
    a place, or a hold giving one back, is news about the unit, not from it."""
    units = sorted({unit for unit, _ in touched})
    offers = (await session.exec(select(OfferRow).where(
        col(OfferRow.unit_hsa_id).in_(units), OfferRow.status == "open", col(OfferRow.remaining) > 0)
        .order_by(col(OfferRow.window_start), col(OfferRow.offer_id)))).all()
    windows: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for o in offers:
        windows[(o.unit_hsa_id, o.care_area)].append(
            {"offer_id": o.offer_id, "start": o.window_start.isoformat(), "end": o.window_end.isoformat(),
             "places": o.remaining})
    reports = {(r.unit_hsa_id, r.care_area): r for r in (await session.exec(
        select(UnitCapacityRow).where(col(UnitCapacityRow.unit_hsa_id).in_(units)))).all()}
    for key, (region, event_id, day, reported) in touched.items():
        row = reports.get(key)
        if row is None:
            row = UnitCapacityRow(unit_hsa_id=key[0], care_area=key[1], region=region, windows=windows[key],
                                  updated_on=day, source_event_id=event_id)
        elif reported and day >= row.updated_on:
            row.windows, row.updated_on, row.source_event_id, row.region = windows[key], day, event_id, region
        else:
            row.windows = windows[key]  # the windows are always current; the date stays the unit's newest report
        session.add(row)


def windows_of(row: UnitCapacityRow) -> list[Window]:
    return [Window(offer_id=str(w["offer_id"]), start=date.fromisoformat(str(w["start"])),
                   end=date.fromisoformat(str(w["end"])), places=int(str(w["places"]))) for w in row.windows]


async def feed(db: Database, *, today: date, care_area: str | None = None,
               region: str | None = None) -> list[tuple[UnitCapacityRow, UnitReport]]:
    """Every unit's report as of `today`, by region, care area and unit."""
    query = select(UnitCapacityRow)
    if care_area is not None:
        query = query.where(UnitCapacityRow.care_area == care_area)
    if region is not None:
        query = query.where(UnitCapacityRow.region == region)
    async with db.session() as session:
        rows = (await session.exec(query.order_by(col(UnitCapacityRow.region), col(UnitCapacityRow.care_area),
                                                  col(UnitCapacityRow.unit_hsa_id)))).all()
    return [(r, report(windows_of(r), updated_on=r.updated_on, today=today)) for r in rows]
