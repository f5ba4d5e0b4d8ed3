"""Agreements through the bus, end to end: real Redis, the workers running, a real database."""

from __future__ import annotations

import uuid
from datetime import date
from importlib import resources
from typing import Any

import pytest
from sqlmodel import col, select

from events import (
    AgreementEnded,
    AgreementRegistered,
    ClearingRoundRequested,
    Envelope,
    OfferPublished,
    Patient,
    RequestPublished,
    new_envelope,
)
from marketplace.adapters.database import Database
from marketplace.adapters.orm import AgreementRow, AgreementVersionRow, PlacementRow, RejectionRow
from marketplace.agreements.csv_import import plan_import
from tests.agreements.terms import terms
from tests.integration.harness import marketplace, publish_events, settle

pytestmark = pytest.mark.integration
SAMPLE = resources.files("marketplace.agreements").joinpath("samples/agreements-25.csv").read_bytes()


async def state(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with db.session() as session:
        rows = (await session.exec(select(AgreementRow).order_by(col(AgreementRow.agreement_id)))).all()
        versions = (await session.exec(select(AgreementVersionRow).order_by(
            col(AgreementVersionRow.agreement_id), col(AgreementVersionRow.version)))).all()
    return ([(r.agreement_id, r.status, r.version, r.terms) for r in rows],
            [(v.agreement_id, v.version, v.event_type, v.event_id) for v in versions])


def resent(envelope: Envelope) -> Envelope:
    """The same content under a new event id: another run of the export tool, not a redelivery."""
    return envelope.model_copy(update={"event_id": uuid.uuid4()})


async def test_importing_the_same_file_twice_changes_nothing_and_a_changed_row_updates(settings, database,
                                                                                         redis_client):
    plan = plan_import(SAMPLE, "25")
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, [r.envelope for r in plan.rows])
        await settle(runtime)
        first = await state(database)
        again = plan_import(SAMPLE, "25")
        await publish_events(runtime.redis, runtime.streams,
                          [r.envelope for r in again.rows] + [resent(r.envelope) for r in again.rows])
        await settle(runtime)
        second = await state(database)
        changed = plan_import(SAMPLE.replace(b"9 600,00", b"9 750,00"), "25")
        await publish_events(runtime.redis, runtime.streams, [r.envelope for r in changed.rows])
        await settle(runtime)
        third = await state(database)

    assert len(first[0]) == 5 and all(status == "registered" and v == 1 for _, status, v, _ in first[0])
    assert second == first
    agreements, versions = third
    assert [(a, v) for a, _, v, _ in agreements] == [
        ("NLL-2026-001", 1), ("NLL-2026-002", 2), ("NLL-2026-003", 1), ("NLL-2026-004", 1), ("NLL-2026-005", 1)]
    assert agreements[1][3]["price_sek"] == 9750.0
    timeline = [(v, kind) for a, v, kind, _ in versions if a == "NLL-2026-002"]
    assert timeline == [(1, "agreement.registered"), (2, "agreement.updated")]


async def test_only_the_purchasing_region_may_change_its_agreement_on_the_bus(settings, database, redis_client):
    registered = new_envelope(AgreementRegistered(agreement_id="A-1", purchaser="25", terms=terms()), producer="25")
    by_provider = new_envelope(AgreementEnded(agreement_id="A-1", purchaser="25", ended_on=date(2026, 6, 1)),
                               producer="01")
    for_other = new_envelope(AgreementRegistered(agreement_id="A-2", purchaser="24", terms=terms()), producer="25")
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, [registered, by_provider, for_other])
        await settle(runtime)
    async with database.session() as session:
        refused = {r.event_id: (r.field, r.rule) for r in (await session.exec(select(RejectionRow))).all()}
        rows = (await session.exec(select(AgreementRow))).all()
    assert refused == {str(by_provider.event_id): ("producer", "producer_is_purchaser"),
                       str(for_other.event_id): ("producer", "producer_is_purchaser")}
    assert [(r.agreement_id, r.status) for r in rows] == [("A-1", "registered")]


def _request(request_id: str, case_ref: str) -> Envelope:
    return new_envelope(RequestPublished(
        request_id=request_id, region="23", care_area="cataract", window_start=date(2026, 3, 1),
        window_end=date(2026, 5, 29), requires_agreement=True,
        patients=(Patient(case_ref=case_ref, waiting_since=date(2025, 10, 1)),)), producer="23")


def _round(round_id: str, as_of: date) -> Envelope:
    return new_envelope(ClearingRoundRequested(round_id=round_id, care_area="cataract", as_of=as_of),
                        producer="operator")


async def _placement(db: Database, round_id: str, case_ref: str) -> PlacementRow:
    async with db.session() as session:
        found = await session.get(PlacementRow, (round_id, case_ref))
    assert found is not None, (round_id, case_ref)
    return found


async def test_an_ended_agreement_no_longer_allows_a_match_that_requires_one(settings, database, redis_client):
    """23 buys cataract care from 18 only under agreement; 18 is the only region with capacity."""
    agreement = new_envelope(AgreementRegistered(agreement_id="JLL-18", purchaser="23", terms=terms(
        provider="18", unit_hsa_id="SE2321000164-KAT31", valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31))),
        producer="23")
    offer = new_envelope(OfferPublished(
        offer_id="off-18", region="18", unit_hsa_id="SE2321000164-KAT31", care_area="cataract", capacity=10,
        window_start=date(2026, 3, 1), window_end=date(2026, 5, 29), price_sek=9600), producer="18")
    ended = new_envelope(AgreementEnded(agreement_id="JLL-18", purchaser="23", ended_on=date(2026, 3, 10),
                                        reason="renegotiated"), producer="23")
    async with marketplace(settings, database) as runtime:
        # Each party writes its own stream, and nothing orders one stream after another: the operator
        # asks for a round once intake has taken in what the regions sent.
        await publish_events(runtime.redis, runtime.streams, [agreement, offer, _request("req-1", "case-23-1")])
        await settle(runtime)
        await publish_events(runtime.redis, runtime.streams, [_round("rnd-bfr", date(2026, 3, 2))])
        await settle(runtime, ["rnd-bfr"])
        await publish_events(runtime.redis, runtime.streams, [ended, _request("req-2", "case-23-2")])
        await settle(runtime)
        await publish_events(runtime.redis, runtime.streams, [_round("rnd-ftr", date(2026, 3, 10))])
        await settle(runtime, ["rnd-ftr"])
        # The same book cleared as of a day before the end: the agreement still counted then.
        await publish_events(runtime.redis, runtime.streams, [_round("rnd-dbfr", date(2026, 3, 9))])
        await settle(runtime, ["rnd-dbfr"])

    placed_before = await _placement(database, "rnd-bfr", "case-23-1")
    assert placed_before.offer_id == "off-18"
    not_placed = await _placement(database, "rnd-ftr", "case-23-2")
    assert (not_placed.offer_id, not_placed.reason) == (None, "no_feasible_offer")
    assert (await _placement(database, "rnd-dbfr", "case-23-2")).offer_id == "off-18"
    async with database.session() as session:
        row = await session.get(AgreementRow, "JLL-18")
    assert row is not None and (row.status, row.ended_on, row.version) == ("ended", date(2026, 3, 10), 2)
