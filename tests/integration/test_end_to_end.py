"""The main path on a real Redis and a real database: regions publish, workers clear, matches come back."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from demo_regions.scenario import bus_id, clearing_requests, region_events
from marketplace.adapters.orm import CaseAnnotationRow, CaseEventRow, CaseRow, MatchRow, OfferRow
from marketplace.entrypoints.demo import read_allocation
from marketplace.lifecycle.timeline import replay_timeline, verify
from marketplace.services.timeline import to_entry
from matchers.audit import audit_allocation
from matchers.scenario import load_scenario
from tests.conftest import shared_path
from tests.integration.harness import marketplace, publish_events, settle

pytestmark = pytest.mark.integration


async def test_small_scenario_is_cleared_validly_through_the_workers(settings, database, redis_client):
    scenario = load_scenario(shared_path("scenarios", "small.json"))
    expected = json.loads(shared_path("scenarios", "expected.json").read_text())["small"]
    async with marketplace(settings, database) as runtime:
        rounds = clearing_requests(scenario, run_id="e2e")
        await publish_events(runtime.redis, runtime.streams, list(region_events(scenario, run_id="e2e")))
        await settle(runtime)  # the operator clears once the regions' input is in (apart streams)
        await publish_events(runtime.redis, runtime.streams, rounds)
        round_ids = [r.payload["round_id"] for r in rounds]
        await settle(runtime, round_ids)
        rows, matches = await read_allocation(database, scenario, round_ids)

    assert audit_allocation(scenario, rows) == []
    assert len(rows) == expected["patients"]
    assert sum(1 for r in rows if r["offer_id"]) == expected["max_allocated"]
    async with database.session() as session:
        offers = {o.offer_id: o for o in (await session.exec(select(OfferRow))).all()}
        cases = {c.case_ref: c for c in (await session.exec(select(CaseRow))).all()}
        timeline = (await session.exec(select(CaseEventRow))).all()
        said = (await session.exec(select(CaseAnnotationRow))).all()
    # Capacity is conserved: what each offer has left is what it had less what it gave. (The bus
    # carries the file's ids where they fit its rules, and tokens of them where they do not.)
    for offer in scenario.offers:
        given = sum(1 for m in matches if m.offer_id == bus_id("off", offer.offer_id))
        assert offers[bus_id("off", offer.offer_id)].remaining == offer.capacity - given
    placed = {bus_id("case", r["case_ref"]) for r in rows if r["offer_id"]}
    assert {ref for ref, c in cases.items() if c.state == "match_proposed"} == placed
    assert all(cases[m.case_ref].current_match_id == m.match_id for m in matches)
    # Every case got its history: need identified, on the book, then matched (a hold) or not placed.
    per_case: dict[str, list[CaseEventRow]] = {}
    not_placed = {a.case_ref for a in said if a.event_type == "patient.not_placed"}
    for entry in sorted(timeline, key=lambda e: (e.case_ref, e.version)):
        per_case.setdefault(entry.case_ref, []).append(entry)
    assert set(per_case) == set(cases)
    for ref, entries in per_case.items():
        kinds = [e.event_type for e in entries]
        assert kinds[:2] == ["case.need_identified", "case.placed_on_book"], ref
        assert ("case.match_held" in kinds) == (ref in placed), ref
        assert (ref in not_placed) == (ref not in placed), ref  # what the bus said, beside the stream
        # The timeline is the truth: its chain holds and replaying it gives the stored state.
        as_entries = [to_entry(e) for e in entries]
        assert verify(as_entries).ok, ref
        assert replay_timeline(as_entries).status.value == cases[ref].state
        assert as_entries[-1].version == cases[ref].version


async def test_republishing_the_same_events_has_one_effect(settings, database, redis_client):
    scenario = load_scenario(shared_path("scenarios", "tiny.json"))
    events = list(region_events(scenario, run_id="dup"))
    rounds = clearing_requests(scenario, run_id="dup")
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, events + events)
        await settle(runtime)
        await publish_events(runtime.redis, runtime.streams, rounds + rounds)
        await settle(runtime, [r.payload["round_id"] for r in rounds])
        rows, _matches = await read_allocation(database, scenario, [r.payload["round_id"] for r in rounds])
    async with database.session() as session:
        assert len((await session.exec(select(MatchRow))).all()) == 2
    assert audit_allocation(scenario, rows) == []
    assert {(r["case_ref"], r["offer_id"]) for r in rows if r["offer_id"]} == {
        ("case-03-1", "off-B"), ("case-25-1", "off-A")}
