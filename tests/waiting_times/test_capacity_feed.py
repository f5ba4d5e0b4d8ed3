"""The free-capacity feed, fed by offers on the bus: real Redis, real database, the workers running."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from events import (
    CaseCommandIssued,
    ClearingRoundRequested,
    OfferPublished,
    OfferWithdrawn,
    Patient,
    RequestPublished,
    new_envelope,
)
from marketplace.adapters.orm import CaseRow
from marketplace.services.capacity import feed
from tests.integration.harness import marketplace, publish_events, settle

pytestmark = pytest.mark.integration
UNIT = "SE2321000016-KAT01"
DAY = date(2026, 3, 2)
AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def offer(offer_id: str, start: date, end: date, capacity: int):
    return new_envelope(OfferPublished(offer_id=offer_id, region="01", unit_hsa_id=UNIT, care_area="cataract",
                                       capacity=capacity, window_start=start, window_end=end, price_sek=9800),
                        producer="01", occurred_at=AT)


async def unit_report(database, today: date = DAY):
    rows = await feed(database, today=today, care_area="cataract")
    assert [r.unit_hsa_id for r, _ in rows] == [UNIT]
    return rows[0][1]


async def test_offers_matches_and_withdrawals_update_the_units_report(settings, database, redis_client):
    async with marketplace(settings, database) as runtime:
        assert await feed(database, today=DAY) == []  # nothing reported yet: "no data", not "no capacity"
        await publish_events(runtime.redis, runtime.streams, [offer("off-1", date(2026, 3, 9), date(2026, 4, 17), 2),
                                                  offer("off-2", date(2026, 5, 4), date(2026, 6, 1), 3)])
        await settle(runtime)
        report = await unit_report(database)
        assert (report.free_capacity, report.places, str(report.band), report.updated_on, report.stale) == \
            (True, 5, "1 - 7 veckor", DAY, False)

        # A match takes one of the unit's places (the matcher's events happen "now", not on the test's day).
        request = RequestPublished(request_id="req-25", region="25", care_area="cataract", window_start=DAY,
                                   window_end=date(2026, 6, 30),
                                   patients=(Patient(case_ref="case-25-1", waiting_since=date(2025, 11, 1)),))
        round_ = ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=DAY)
        # The operator asks for the round once intake has the request (the parties' streams are apart).
        await publish_events(runtime.redis, runtime.streams, [new_envelope(request, producer="25")])
        await settle(runtime)
        await publish_events(runtime.redis, runtime.streams, [new_envelope(round_, producer="operator")])
        await settle(runtime, ["rnd-1"])
        assert (await unit_report(database)).places == 4
        # The provider declines: the hold is released and the place is free again.
        async with database.session() as session:
            case = await session.get(CaseRow, "case-25-1")
        assert case is not None and case.current_match_id is not None
        decline = CaseCommandIssued(case_ref="case-25-1", command="decline_match",
                                    args={"match_id": case.current_match_id, "reason_code": "no_capacity"})
        await publish_events(runtime.redis, runtime.streams, [new_envelope(decline, producer="01")])
        await settle(runtime)
        report = await unit_report(database)
        assert (report.places, report.updated_on) == (5, DAY)  # news about the unit, not a report from it

        # The earlier offer withdrawn: the wait moves out to the later window; both gone: no free capacity.
        await publish_events(runtime.redis, runtime.streams, [
            new_envelope(OfferWithdrawn(offer_id="off-1", region="01"), producer="01", occurred_at=AT)])
        await settle(runtime)
        report = await unit_report(database)
        assert (report.free_capacity, report.places, str(report.band)) == (True, 3, "9 - 13 veckor")
        await publish_events(runtime.redis, runtime.streams, [
            new_envelope(OfferWithdrawn(offer_id="off-2", region="01"), producer="01", occurred_at=AT)])
        await settle(runtime)
        report = await unit_report(database)
        assert (report.free_capacity, report.band, report.places) == (False, None, 0)

    # Six weeks after the last update the report is still current; a day later it is stale.
    assert not (await unit_report(database, date(2026, 4, 13))).stale
    assert (await unit_report(database, date(2026, 4, 14))).stale
