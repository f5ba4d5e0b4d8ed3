"""A care area's open book as a clearing round reads it, and the rows the round writes besides
capacity (`slots`), the timelines and the outbox.

Every read and write here is one statement for the whole book, however many offers and cases it
holds: a round reads its book once, decides in the pure core, and writes what it decided once.
Rows are plain values, not ORM objects: the round changes none of them through the unit of work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Row, Select, bindparam, exists, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.appends import append
from marketplace.adapters.orm import CaseRow, ClearingRoundRow, OfferRow, PlacementRow, RequestRow

CASES = CaseRow.__table__  # type: ignore[attr-defined]
OFFERS = OfferRow.__table__  # type: ignore[attr-defined]
PLACEMENTS = PlacementRow.__table__  # type: ignore[attr-defined]
REQUESTS = RequestRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BookRows:
    """The open book of a care area as stored: offers with capacity left, the cases on the book,
    and the open requests of those cases (each ordered by its id)."""

    offers: Sequence[Row[Any]]
    cases: Sequence[Row[Any]]
    requests: Sequence[Row[Any]]


async def round_recorded(session: AsyncSession, round_id: str) -> bool:
    # Through the unit of work: a round recorded earlier in this transaction is still pending there.
    return await session.get(ClearingRoundRow, round_id) is not None


async def read(session: AsyncSession, care_area: str, on_book: str) -> BookRows:
    """The open book of `care_area`: its open offers with capacity left, its cases in state
    `on_book`, and the open requests those cases belong to."""
    o, c, r = OFFERS.c, CASES.c, REQUESTS.c
    connection = await session.connection()
    offers = (await connection.execute(
        select(o.offer_id, o.region, o.unit_hsa_id, o.care_area, o.remaining, o.window_start, o.window_end,
               o.price_sek)
        .where(o.care_area == care_area, o.status == "open", o.remaining > 0).order_by(o.offer_id))).all()
    waiting = select(c.request_id).where(c.care_area == care_area, c.state == on_book)
    cases = (await connection.execute(waiting.add_columns(
        c.case_ref, c.waiting_since, c.excluded_offers, c.last_reason).order_by(c.case_ref))).all()
    # Only the requests with a patient still on the book: the others are settled and would only
    # make every round slower than the last.
    requests = (await connection.execute(
        select(r.request_id, r.region, r.care_area, r.window_start, r.window_end, r.max_price_sek, r.max_travel_km,
               r.excluded_regions, r.requires_agreement)
        .where(r.request_id.in_(waiting), r.status == "open").order_by(r.request_id))).all() if cases else []
    return BookRows(offers, cases, requests)


async def read_placeable(session: AsyncSession, care_area: str, on_book: str, as_of: date) -> BookRows:
    """The part of `care_area`'s open book a continuous round reads (`matchers.incremental.
    placeable_part` says why it is enough): its open offers with capacity left; of its cases in
    state `on_book`, those no round has read yet (no `last_reason`: new on the book, or put back
    on it) and those whose request may take one of those offers by the rules a statement can
    ask (both unexpired, windows overlap, price within the ceiling); and their open requests.
    The cases a round left unplaced that no offer with room may serve (a price ceiling below
    every offer's, say) are not read, however many they are."""
    o, c, r = OFFERS.c, CASES.c, REQUESTS.c
    connection = await session.connection()
    open_offer = (o.care_area == care_area, o.status == "open", o.remaining > 0)
    offers = (await connection.execute(
        select(o.offer_id, o.region, o.unit_hsa_id, o.care_area, o.remaining, o.window_start, o.window_end,
               o.price_sek)
        .where(*open_offer).order_by(o.offer_id))).all()
    waiting = [c.care_area == care_area, c.state == on_book]
    usable = [offer for offer in offers if offer.window_end is not None and offer.window_end >= as_of]
    if usable:
        # Asked per case on the book, through its request's key, never per request of the care
        # area (those stay open after their patients left) nor per request and offer: first the
        # bounds every offer with room shares (the lowest price, the earliest start, the latest
        # end), which a ceiling below every offer's fails at once, then the offers themselves.
        # Only a necessary condition is added, so the cases read are exactly the servable ones.
        servable = exists().where(
            r.request_id == c.request_id, r.status == "open", r.window_end >= as_of,
            r.window_end >= min(offer.window_start for offer in usable),
            r.window_start <= max(offer.window_end for offer in usable),
            or_(r.max_price_sek.is_(None), r.max_price_sek >= min(offer.price_sek for offer in usable)),
            exists().where(*open_offer, o.window_end >= as_of, o.window_start <= r.window_end,
                           o.window_end >= r.window_start,
                           or_(r.max_price_sek.is_(None), o.price_sek <= r.max_price_sek)))
        waiting.append(or_(c.last_reason.is_(None), servable))
    else:
        waiting.append(c.last_reason.is_(None))
    query = select(c.request_id, c.case_ref, c.waiting_since, c.excluded_offers, c.last_reason).where(*waiting)
    cases = (await connection.execute(query.order_by(c.case_ref))).all()
    return BookRows(offers, cases, await _requests_of(connection, cases, query))


# Past this many requests, they are asked for by their cases' query again rather than by their
# keys (the drivers bound the parameters of one statement).
_MANY = 5000


async def _requests_of(connection: Any, cases: Sequence[Row[Any]], query: Select[Any]) -> Sequence[Row[Any]]:
    """The open requests of `cases` (read by `query`, which selects their request ids first), by
    their keys: a list the round has just read, not a subquery the planner might run per request."""
    if not cases:
        return []
    r = REQUESTS.c
    ids = sorted({case.request_id for case in cases})
    wanted = r.request_id.in_(ids) if len(ids) <= _MANY else r.request_id.in_(query.with_only_columns(
        query.selected_columns[0]).order_by(None))
    return (await connection.execute(
        select(r.request_id, r.region, r.care_area, r.window_start, r.window_end, r.max_price_sek, r.max_travel_km,
               r.excluded_regions, r.requires_agreement)
        .where(wanted, r.status == "open").order_by(r.request_id))).all()


def place(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each patient's outcome of a round (appended in bulk at the commit)."""
    for row in rows:
        append(session, PLACEMENTS, dict(row))


async def update_cases(session: AsyncSession, changes: Mapping[str, Mapping[str, Any]]) -> None:
    """Set the given columns of each case (`changes[case_ref]`, the same columns for every case):
    one statement for them all."""
    if not changes:
        return
    rows = [{"ref": ref, **values} for ref, values in changes.items()]
    connection = await session.connection()
    await connection.execute(update(CASES).where(CASES.c.case_ref == bindparam("ref")), rows)
