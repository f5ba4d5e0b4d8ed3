"""Cases carried through their lifecycle on a real Redis and a real database, with a clock the test moves."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from demo_regions.scenario import region_events
from events import CaseCommandIssued, CaseStateChanged, ClearingRoundRequested, RequestWithdrawn, new_envelope
from events.envelope import parse_envelope
from marketplace.adapters.orm import CaseEventRow, CaseRow, MatchRow, OfferRow, RejectionRow
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.entrypoints.cli import app
from marketplace.lifecycle import SendReferral
from marketplace.lifecycle.timeline import replay_timeline, verify
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.timeline import load_events, load_timeline
from matchers.scenario import parse_scenario
from tests.integration.harness import marketplace, publish_events, settle
from workers.sweeper import DeadlineSweeper

pytestmark = pytest.mark.integration

AS_OF = date(2026, 3, 2)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def book(offers: list[dict[str, Any]], patients: int = 1, waiting_since: str = "2025-12-20") -> Any:
    return parse_scenario({
        "name": "lifecycle", "as_of": AS_OF.isoformat(), "agreements": [],
        "offers": [{"unit_hsa_id": f"SE2321000016-{o['offer_id'][-2:].upper()}", "care_area": "cataract",
                    "capacity": 1, "window_start": "2026-03-02", "window_end": "2026-04-30", **o} for o in offers],
        "requests": [{"request_id": "req-25", "region": "25", "care_area": "cataract", "window_start": "2026-03-02",
                      "window_end": "2026-06-30", "max_price_sek": None, "max_travel_km": None,
                      "excluded_regions": [], "requires_agreement": False,
                      "patients": [{"case_ref": f"case-25-{i}", "waiting_since": waiting_since}
                                   for i in range(1, patients + 1)]}],
    })


async def clear(runtime: Any, round_id: str) -> None:
    # The operator asks once intake has taken in what the regions published (apart streams).
    await settle(runtime)
    envelope = new_envelope(ClearingRoundRequested(round_id=round_id, care_area="cataract", as_of=AS_OF),
                            producer="operator")
    await publish_events(runtime.redis, runtime.streams, [envelope])
    await settle(runtime, [round_id])


async def command(runtime: Any, case_ref: str, name: str, producer: str, **args: Any) -> None:
    envelope = new_envelope(CaseCommandIssued(case_ref=case_ref, command=name, args=args), producer=producer)
    await publish_events(runtime.redis, runtime.streams, [envelope])
    await settle(runtime)


async def case_row(db: Any, ref: str) -> CaseRow:
    async with db.session() as session:
        row = await session.get(CaseRow, ref)
    assert row is not None
    return row


async def remaining(db: Any, offer_id: str) -> int:
    async with db.session() as session:
        offer = await session.get(OfferRow, offer_id)
    assert offer is not None
    return offer.remaining


async def rejections(db: Any) -> list[RejectionRow]:
    async with db.session() as session:
        return list((await session.exec(select(RejectionRow))).all())


async def test_one_case_through_every_state_to_closed(settings, database, redis_client):
    clock = Clock(START)
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9800}])
    visited = []
    async with marketplace(settings, database) as runtime:
        runtime.context.clock = clock
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
        ref = "case-25-1"
        match_id = (await case_row(database, ref)).current_match_id
        visited.append((await case_row(database, ref)).state)
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("accept_match", "01", {"match_id": match_id}),
            ("offer_to_patient", "25", {}),
            ("record_patient_answer", "25", {"match_id": match_id, "accepted": True}),
        ]
        for name, who, args in steps:
            clock.advance(hours=2)
            await command(runtime, ref, name, who, **args)
            visited.append((await case_row(database, ref)).state)
        # The referral itself travels as a secure message; the notifier records it like this.
        async with database.session() as session:
            await CaseLedger(session, runtime.context).apply(SendReferral(ref, referral_id="ref-1"),
                                                             correlation_id="corr-1", producer="notifier")
            await session.commit()
        visited.append((await case_row(database, ref)).state)
        for name, who, args in [
            ("acknowledge_referral", "01", {"referral_id": "ref-1"}),
            ("schedule", "01", {"scheduled_for": "2026-03-05"}),
            ("record_performed", "01", {"performed_on": "2026-03-05"}),
            ("record_follow_up", "01", {}),
            ("invoice", "01", {"invoice_id": "inv-1"}),
            ("record_payment", "25", {"payment_ref": "pay-1", "amount_sek": "9800"}),
            ("close", "25", {}),
        ]:
            clock.advance(days=1)
            await command(runtime, ref, name, who, **args)
            visited.append((await case_row(database, ref)).state)
        async with database.session() as session:
            entries = await load_events(session, ref)
            merged = await load_timeline(session, ref)

    assert await rejections(database) == []
    assert visited == ["match_proposed", "provider_accepted", "offered_to_patient", "patient_accepted", "referred",
                       "referral_acknowledged", "scheduled", "performed", "followed_up", "invoiced", "settled",
                       "closed"]
    kinds = [e.event_type for e in entries]
    assert kinds[:3] == ["case.need_identified", "case.placed_on_book", "case.match_held"]
    assert kinds[-3:] == ["case.payment_recorded", "case.settled", "case.closed"]
    assert verify(entries).ok
    rebuilt = replay_timeline(entries)
    assert rebuilt.status.value == "closed" and rebuilt.version == (await case_row(database, ref)).version
    # The stream is the case's own: version n is the case after its n-th event, nothing else between.
    assert [e.version for e in entries] == list(range(1, rebuilt.version + 1))
    # What the bus said (messages sent, receipts) sits beside it, labelled, in time order.
    said = [e for e in merged if e.is_annotation]
    assert said and all(not e.event_type.startswith("case.") for e in said)
    assert [e for e in merged if not e.is_annotation] == entries
    assert [e.occurred_at for e in merged] == sorted(e.occurred_at for e in merged)
    assert rebuilt.settlement is not None and rebuilt.settlement.invoice_total_sek == 9800


async def test_provider_decline_then_matched_elsewhere_in_the_next_round(settings, database, redis_client):
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9000},
                     {"offer_id": "off-03", "region": "03", "price_sek": 9900}])
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
        first = await case_row(database, "case-25-1")
        async with database.session() as session:
            match = await session.get(MatchRow, first.current_match_id)
        assert match is not None
        declined_offer = match.offer_id
        await command(runtime, "case-25-1", "decline_match", match.providing_region, match_id=match.match_id,
                      reason_code="no_capacity")
        after_decline = await case_row(database, "case-25-1")
        assert after_decline.state == "on_book" and after_decline.excluded_offers == [declined_offer]
        assert await remaining(database, declined_offer) == 1  # the slot went back to its offer
        await clear(runtime, "rnd-2")
        second = await case_row(database, "case-25-1")
        async with database.session() as session:
            rematch = await session.get(MatchRow, second.current_match_id)
    assert second.state == "match_proposed"
    assert rematch is not None and rematch.offer_id != declined_offer and rematch.round_id == "rnd-2"


async def test_a_hold_that_expires_returns_its_slot(settings, database, redis_client):
    clock = Clock(START)
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9000}])
    async with marketplace(settings, database) as runtime:
        runtime.context.clock = clock
        sweeper = DeadlineSweeper(runtime)
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
        assert await remaining(database, "off-01") == 0
        clock.advance(hours=47, minutes=59)
        assert await sweeper.tick() == 0  # not due yet: the provider has 48 hours
        clock.advance(minutes=2)
        assert await sweeper.tick() == 1
        assert await sweeper.tick() == 0  # the same deadline is published once
        await settle(runtime)
        row = await case_row(database, "case-25-1")
        async with database.session() as session:
            entries = await load_timeline(session, "case-25-1")
        await sweeper.stop()
    assert row.state == "on_book" and row.excluded_offers == ["off-01"]
    assert await remaining(database, "off-01") == 1
    case_events = [e.event_type for e in entries if e.event_type.startswith("case.")]
    assert case_events[-2:] == ["case.hold_expired", "case.hold_released"]


async def test_withdrawal_during_a_hold_releases_it_and_tells_the_provider(settings, database, redis_client):
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9000}])
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
        withdraw = new_envelope(RequestWithdrawn(request_id="req-25", region="25",
                                                 reason_code="found_slot_in_home_region"), producer="25")
        await publish_events(runtime.redis, runtime.streams, [withdraw])
        await settle(runtime)
        entries = await runtime.redis.xrange(runtime.streams.cases)
    row = await case_row(database, "case-25-1")
    assert row.state == "withdrawn" and row.current_match_id is None
    assert await remaining(database, "off-01") == 1
    changes = [parse_envelope(f[DATA_FIELD.encode()])[1] for _, f in entries]
    released = [p for p in changes if isinstance(p, CaseStateChanged) and p.event_type == "case.hold_released"]
    assert len(released) == 1
    assert released[0].details["notify_provider"] is True and released[0].details["providing_region"] == "01"


async def test_breach_warning_is_raised_on_the_right_day(settings, database, redis_client):
    # Decided 2025-12-20: the guarantee date is 90 days later, 2026-03-20; the breach is the day after.
    clock = Clock(START)
    scenario = book([], waiting_since="2025-12-20")
    async with marketplace(settings, database) as runtime:
        runtime.context.clock = clock
        sweeper = DeadlineSweeper(runtime)
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await settle(runtime)
        assert (await case_row(database, "case-25-1")).guarantee_date == date(2026, 3, 20)
        for day in range(25):
            clock.now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC) + timedelta(days=day)
            if await sweeper.tick():
                await settle(runtime)
        await sweeper.stop()
        async with database.session() as session:
            entries = await load_timeline(session, "case-25-1")
    raised = [(e.occurred_at.date(), e.payload["days_left"]) for e in entries
              if e.event_type == "case.guarantee_warning_raised"]
    assert raised == [(date(2026, 3, 6), 14), (date(2026, 3, 13), 7), (date(2026, 3, 21), -1)]  # -1: past the guarantee


async def test_a_changed_timeline_entry_is_caught_by_verify(settings, database, redis_client, monkeypatch):
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9000}])
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
    # The state directory holds the marketplace's checkpoint key, which `--verify` checks the head with.
    for key, value in {"DATABASE_URL": settings.effective_database_url, "NVF_DB_SCHEMA": settings.db_schema or "",
                       "REDIS_URL": settings.redis_url or "", "NVF_STATE_DIR": str(settings.state_dir)}.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    # The CLI runs its own event loop, as it does for a user: give it a thread of its own.
    ok = await asyncio.to_thread(runner.invoke, app, ["timeline", "case-25-1", "--verify"])
    assert ok.exit_code == 0, ok.output
    assert "hash chain intact" in ok.output and "case.match_held" in ok.output
    async with database.session() as session:
        entry = (await session.exec(select(CaseEventRow).where(CaseEventRow.case_ref == "case-25-1",
                                                              CaseEventRow.event_type == "case.match_held"))).one()
        entry.payload = json.loads(json.dumps(entry.payload).replace("9000", "19000"))
        session.add(entry)
        await session.commit()
    broken = await asyncio.to_thread(runner.invoke, app, ["timeline", "case-25-1", "--verify"])
    assert broken.exit_code == 1
    assert f"BROKEN (event stream) at version {entry.version}" in broken.output and "hash_mismatch" in broken.output
    assert "hash chain intact (annotations)" in broken.output


async def test_a_party_may_only_say_what_is_theirs(settings, database, redis_client):
    scenario = book([{"offer_id": "off-01", "region": "01", "price_sek": 9000}])
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="t")))
        await clear(runtime, "rnd-1")
        match_id = (await case_row(database, "case-25-1")).current_match_id
        await command(runtime, "case-25-1", "accept_match", "13", match_id=match_id)  # not the provider
        await command(runtime, "case-25-1", "schedule", "01", scheduled_for="2026-03-20")  # not yet
    refused = {(r.field, r.rule) for r in await rejections(database)}
    # Region 13 is no party to the case: refused as if the case did not exist (it learns nothing).
    assert ("payload.case_ref", "known_case") in refused
    assert ("payload.command", "IllegalTransition") in refused
    assert (await case_row(database, "case-25-1")).state == "match_proposed"
