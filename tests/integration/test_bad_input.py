"""Bad input from a region: nothing of it is stored, the reason is recorded, the sender is told, work goes on."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from sqlmodel import select

from events import OfferPublished, new_envelope
from events.envelope import parse_envelope
from marketplace.adapters.orm import CaseRow, OfferRow, RejectionRow, RequestRow
from marketplace.adapters.outbox import DATA_FIELD
from tests.integration.harness import marketplace, publish_events, settle

pytestmark = pytest.mark.integration


def _offer(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "offer_id": "off-1", "region": "01", "unit_hsa_id": "SE2321000016-KATA1", "care_area": "cataract",
        "capacity": 10, "window_start": "2026-03-09", "window_end": "2026-04-17", "price_sek": 9800,
    }
    payload.update(changes)
    return {"event_id": "6f1c1a9e-8d8e-4f64-9d55-3d6f0c7f2a10", "type": "offer.published", "schema_version": 1,
            "occurred_at": "2026-03-01T08:00:00Z", "producer": payload.get("region", "01"),
            "correlation_id": "corr-1", "payload": payload}


def _with_id(event: dict[str, Any], n: int) -> dict[str, Any]:
    event["event_id"] = f"00000000-0000-4000-8000-{n:012d}"
    return event


BAD = [
    # (what a region sent, field named, rule named)
    (_with_id(_offer(offer_id="off-2"), 1) | {"payload": {k: v for k, v in _offer()["payload"].items()
                                                               if k != "price_sek"}},
     "payload.price_sek", "missing"),
    # Sent by region 01 on its own stream, for a region that does not exist.
    (_with_id(_offer(offer_id="off-3", region="99"), 2) | {"producer": "01"}, "payload.region", "known_region"),
    (_with_id(_offer(offer_id="off-4", window_end="2026-03-01"), 3), "payload.window_end", "window_order"),
    (_with_id(_offer(offer_id="off-5", capacity=0), 4), "payload.capacity", "greater_than"),
    (_with_id(_offer(offer_id="off-6", care_area="dentistry"), 5), "payload.care_area", "known_care_area"),
]
# Entries that are not JSON at all are poison, not refusals: see tests/integration/test_poison.py.


async def test_bad_input_is_refused_named_and_nothing_is_stored(settings, database, redis_client):
    good = new_envelope(OfferPublished(offer_id="off-7", region="13", unit_hsa_id="SE2321000115-KATB2",
                                       care_area="cataract", capacity=3, window_start=date(2026, 3, 2),
                                       window_end=date(2026, 3, 31), price_sek=9000), producer="13")
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, [item for item, _, _ in BAD] + [good])
        await settle(runtime)
        entries = await runtime.redis.xrange(runtime.streams.rejections)
        # What each sender reads: its own outgoing stream (the raw non-JSON went on region 01's).
        own = {party: await runtime.redis.xrange(runtime.streams.outgoing(party)) for party in ("01", "13")}

    async with database.session() as session:
        offers = (await session.exec(select(OfferRow))).all()
        rejections = (await session.exec(select(RejectionRow))).all()
        assert (await session.exec(select(RequestRow))).all() == []
        assert (await session.exec(select(CaseRow))).all() == []
    # Only the good offer was stored: the workers went on after the bad ones.
    assert [o.offer_id for o in offers] == ["off-7"]
    recorded = {(r.field, r.rule) for r in rejections}
    told = []
    for _, fields in entries:
        envelope, payload = parse_envelope(fields[DATA_FIELD.encode()])
        assert envelope.type == "event.rejected"
        told.append((payload.field, payload.rule, payload.message, payload.producer))  # type: ignore[attr-defined]
    assert len(told) == len(BAD) == len(rejections)
    for _, field, rule in BAD:
        assert (field, rule) in recorded
        assert any(f == field and r == rule and m for f, r, m, _ in told), (field, rule, told)
    # Region 01 sent all the bad ones: each refusal is on its own outgoing stream, none on 13's.
    mine = [parse_envelope(fields[DATA_FIELD.encode()])[1] for _, fields in own["01"]]
    assert sorted((p.field, p.rule) for p in mine) == sorted((f, r) for _, f, r in BAD)  # type: ignore[attr-defined]
    assert own["13"] == []


async def test_a_request_with_one_bad_patient_stores_nothing_of_it(settings, database, redis_client):
    request = {
        "event_id": "00000000-0000-4000-8000-000000000100", "type": "request.published", "schema_version": 1,
        "occurred_at": "2026-03-01T08:00:00Z", "producer": "25", "correlation_id": "corr-1",
        "payload": {"request_id": "req-1", "region": "25", "care_area": "cataract",
                    "window_start": "2026-03-02", "window_end": "2026-05-29", "max_price_sek": 12000,
                    "max_travel_km": 1200, "excluded_regions": ["13"], "requires_agreement": False,
                    "patients": [{"case_ref": "case-1", "waiting_since": "2025-10-01"},
                                 {"case_ref": "case-2", "waiting_since": "not a date"}]},
    }
    async with marketplace(settings, database) as runtime:
        await publish_events(runtime.redis, runtime.streams, [json.dumps(request)])
        await settle(runtime)
    async with database.session() as session:
        assert (await session.exec(select(RequestRow))).all() == []
        assert (await session.exec(select(CaseRow))).all() == []
        (rejection,) = (await session.exec(select(RejectionRow))).all()
    assert rejection.field == "payload.patients.1.waiting_since"
    assert rejection.producer == "25"
