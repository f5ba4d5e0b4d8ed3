"""The auto-clearer's continuous round is incremental on the real databases: it reads only the
cases an offer with room may serve and those no round has read, its result is the optimum of the
whole book (a full re-solve of the same stored book), and cases nothing can place are not read
again however many wait."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import col, select

from events import OfferPublished, Patient, RequestPublished, Streams, new_envelope
from marketplace.adapters.orm import ClearingRoundRow
from marketplace.services import clearing, intake
from marketplace.services.context import ServiceContext
from matchers.clearing import clear

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START, END = date(2026, 3, 9), date(2026, 4, 30)
AS_OF = START - timedelta(days=7)


def _ctx() -> ServiceContext:
    return ServiceContext(streams=Streams("incr"), clock=lambda: NOW)


def _offer(offer_id: str, capacity: int, price: float = 9000, region: str = "13") -> str:
    return new_envelope(OfferPublished(offer_id=offer_id, region=region, unit_hsa_id=f"SE23210000{region}-U",
                                       care_area="cataract", capacity=capacity, window_start=START, window_end=END,
                                       price_sek=price), producer=region).to_json()


def _request(request_id: str, patients: int, *, max_price: float | None = None, waited: int = 30,
             max_travel: float | None = None) -> str:
    tag = request_id.removeprefix("req-")
    return new_envelope(RequestPublished(
        request_id=request_id, region="01", care_area="cataract", window_start=START, window_end=END,
        max_price_sek=max_price, max_travel_km=max_travel,
        patients=tuple(Patient(case_ref=f"case-{tag}-{k}", waiting_since=START - timedelta(days=waited + k))
                       for k in range(patients))), producer="01").to_json()


async def _publish(database, *items: str) -> None:
    async with database.session() as session:
        await intake.handle_batch(session, list(items), _ctx())
        await session.commit()


async def _round(database) -> ClearingRoundRow | None:
    """The whole book's optimum (a full read, solved), then a continuous round: their values must agree."""
    async with database.session() as session:
        whole = await clearing.read_book(session, "cataract", AS_OF)
    full = clear(whole.scenario)
    async with database.session() as session:
        round_id = await clearing.run_continuous_round(session, _ctx(), "cataract", AS_OF, "optimal")
        await session.commit()
    if round_id is None:
        assert full.placed == 0
        return None
    async with database.session() as session:
        row = (await session.exec(select(ClearingRoundRow).where(col(ClearingRoundRow.round_id) == round_id))).one()
    assert (row.placed, row.wait_days, row.cost_sek) == (full.placed, full.wait_days, full.total_cost_sek)
    return row


async def test_a_continuous_round_reads_only_what_can_change_and_keeps_the_optimum(database):
    # A deep book nothing can place (a price ceiling below every offer) and a scarce offer.
    await _publish(database, _offer("off-1", 2), *(_request(f"req-dp{i}", 10, max_price=1) for i in range(8)),
                   _request("req-bk", 4))
    first = await _round(database)
    assert first is not None and (first.patients, first.placed) == (84, 2)  # all new: every reason recorded

    # Nothing changed: no round at all.
    assert await _round(database) is None

    # A new offer: only the two patients it may serve (left over, capacity exhausted) are read.
    await _publish(database, _offer("off-2", 1, price=9500))
    row = await _round(database)
    assert row is not None and (row.patients, row.placed) == (2, 1)

    # A new request and an offer with room to spare: the new patients and the one left over.
    await _publish(database, _offer("off-3", 5, price=9100), _request("req-cd", 2, waited=10))
    row = await _round(database)
    assert row is not None and (row.patients, row.placed) == (3, 3)

    # Room is left on off-3, but nobody waiting may take it: a new deep patient is read alone,
    # and one too far from the offer (max travel) is read once and then no more.
    await _publish(database, _request("req-dpx", 1, max_price=1), _request("req-fr", 1, max_travel=1))
    row = await _round(database)
    assert row is not None and (row.patients, row.placed) == (2, 0)
    assert await _round(database) is None
