"""A market published entirely through the API (offers, requests, clearing, the parties' commands)
reaches the same allocation and the same timelines as the same market published on the bus."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx
import pytest
from sqlmodel import col, select

from demo_regions.scenario import region_events
from events import CaseCommandIssued, ClearingRoundRequested, new_envelope
from marketplace.adapters.database import Database
from marketplace.adapters.orm import CaseRow, MatchRow
from marketplace.adapters.redis_users import remove
from marketplace.entrypoints.api.routes.cases import ACTIONS_BY_COMMAND
from marketplace.entrypoints.server import create_app
from marketplace.lifecycle import SendReferral
from marketplace.parties import all_parties
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.timeline import load_timeline
from marketplace.settings import Settings
from matchers.reference import regions
from matchers.scenario import parse_scenario
from tests.api.conftest import START, Api, Clock
from tests.api.scenario import wait_for
from tests.integration.harness import marketplace, publish_events, settle
from workers.app import ROLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = "2026-03-02"


def _hsa(region: str, unit: str) -> str:
    return f"SE{regions()[region].org_number.replace('-', '')}-{unit}"


OFFERS: list[dict[str, Any]] = [
    {"offer_id": "off-01", "region": "01", "unit_hsa_id": _hsa("01", "OGA"), "capacity": 2, "price_sek": 9800},
    {"offer_id": "off-03", "region": "03", "unit_hsa_id": _hsa("03", "OGB"), "capacity": 1, "price_sek": 9500},
]
REQUESTS: list[dict[str, Any]] = [
    {"request_id": "req-25", "region": "25", "patients": [("case-25-1", "2025-10-01"), ("case-25-2", "2025-11-15")]},
    {"request_id": "req-14", "region": "14", "patients": [("case-14-1", "2025-12-01"), ("case-14-2", "2026-02-01")]},
]


def market() -> Any:
    return parse_scenario({
        "name": "api-vs-bus", "as_of": AS_OF, "agreements": [],
        "offers": [{**o, "care_area": "cataract", "window_start": "2026-03-02", "window_end": "2026-04-30"}
                   for o in OFFERS],
        "requests": [{"request_id": r["request_id"], "region": r["region"], "care_area": "cataract",
                      "window_start": "2026-03-02", "window_end": "2026-06-30", "max_price_sek": None,
                      "max_travel_km": None, "excluded_regions": [], "requires_agreement": False,
                      "patients": [{"case_ref": ref, "waiting_since": since} for ref, since in r["patients"]]}
                     for r in REQUESTS],
    })


class Driver(Protocol):
    db: Database

    async def publish_market(self) -> None: ...
    async def clear(self, round_id: str) -> None: ...
    async def command(self, party: str, case_ref: str, command: str, args: dict[str, Any]) -> None: ...
    async def referral(self, case_ref: str) -> None: ...
    async def settle(self) -> None: ...


async def cases(db: Database) -> dict[str, CaseRow]:
    async with db.session() as session:
        return {r.case_ref: r for r in (await session.exec(select(CaseRow).order_by(col(CaseRow.case_ref)))).all()}


async def provider_of(db: Database, row: CaseRow) -> MatchRow:
    async with db.session() as session:
        match = await session.get(MatchRow, row.current_match_id)
    assert match is not None
    return match


async def play(driver: Driver) -> None:
    """The same story for both drivers; who does what depends only on what the market decided."""
    await driver.publish_market()
    await driver.clear("rnd-1")
    proposed = [r for r in (await cases(driver.db)).values() if r.state == "match_proposed"]
    assert len(proposed) == 3
    for i, row in enumerate(proposed):
        match = await provider_of(driver.db, row)
        if i == 0:
            await driver.command(match.providing_region, row.case_ref, "decline_match", {"reason_code": "no_capacity"})
        else:
            await driver.command(match.providing_region, row.case_ref, "accept_match", {})
    await driver.settle()
    await driver.clear("rnd-2")
    for row in (await cases(driver.db)).values():
        if row.state == "match_proposed":
            await driver.command((await provider_of(driver.db, row)).providing_region, row.case_ref,
                                 "accept_match", {})
    accepted = [r for r in (await cases(driver.db)).values() if r.state == "provider_accepted"]
    for i, row in enumerate(accepted):
        await driver.command(row.region, row.case_ref, "offer_to_patient", {})
        answer = {"accepted": True} if i != 1 else {"accepted": False, "reason_code": "too_far"}
        await driver.command(row.region, row.case_ref, "record_patient_answer", answer)
    ready = [r for r in (await cases(driver.db)).values() if r.state == "patient_accepted"]
    first, rest = ready[0], ready[1:]
    match = await provider_of(driver.db, first)
    provider = match.providing_region
    await driver.referral(first.case_ref)
    for command, party, args in [
        ("acknowledge_referral", provider, {}), ("schedule", provider, {"scheduled_for": "2026-03-02"}),
        ("record_performed", provider, {"performed_on": "2026-03-02"}), ("record_follow_up", provider, {}),
        ("invoice", provider, {"invoice_id": "inv-1"}),
        ("record_payment", first.region, {"payment_ref": "pay-1", "amount_sek": f"{match.price_sek:.2f}"}),
        ("close", "operator", {}),
    ]:
        await driver.command(party, first.case_ref, command, args)
    for row in rest:
        await driver.command(row.region, row.case_ref, "withdraw", {"reason": "found_slot_in_home_region"})
    for row in (await cases(driver.db)).values():
        if row.state == "on_book":
            await driver.command("operator", row.case_ref, "cancel", {"reason": "entered_in_error"})
    await driver.settle()


async def outcome(db: Database) -> tuple[dict[str, str], list[tuple[str, str, str]], dict[str, list[str]]]:
    states = {ref: row.state for ref, row in (await cases(db)).items()}
    async with db.session() as session:
        matches = sorted((m.round_id, m.case_ref, m.offer_id) for m in (await session.exec(select(MatchRow))).all())
        timelines = {ref: [e.event_type for e in await load_timeline(session, ref)] for ref in states}
    return states, matches, timelines


class BusDriver:
    """Each party's entries on its own ingress stream, as their own systems would publish them."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.db = runtime.db

    async def publish_market(self) -> None:
        await publish_events(self.runtime.redis, self.runtime.streams, list(region_events(market(), run_id="bus")))
        await settle(self.runtime)

    async def clear(self, round_id: str) -> None:
        envelope = new_envelope(ClearingRoundRequested(round_id=round_id, care_area="cataract", as_of=AS_OF),
                                producer="operator")
        await publish_events(self.runtime.redis, self.runtime.streams, [envelope])
        await settle(self.runtime, [round_id])

    async def command(self, party: str, case_ref: str, command: str, args: dict[str, Any]) -> None:
        row = (await cases(self.db))[case_ref]
        if command in ("accept_match", "decline_match", "record_patient_answer"):
            args = {**args, "match_id": row.current_match_id}
        if command == "acknowledge_referral":
            args = {**args, "referral_id": "ref-1"}
        envelope = new_envelope(CaseCommandIssued(case_ref=case_ref, command=command, args=args),
                                producer=party)
        await publish_events(self.runtime.redis, self.runtime.streams, [envelope])

        async def applied() -> bool:
            return (await cases(self.db))[case_ref].version > row.version

        await wait_for(applied, what=f"{command} on {case_ref}")

    async def referral(self, case_ref: str) -> None:
        await _referral(self.runtime, case_ref)

    async def settle(self) -> None:
        await settle(self.runtime)


async def _referral(runtime: Any, case_ref: str) -> None:
    # The referral itself is a secure message the home region's own system composes (it alone carries
    # the patient's identity); it is not an API or bus command. Both drivers record it alike.
    async with runtime.db.session() as session:
        await CaseLedger(session, runtime.context).apply(SendReferral(case_ref, referral_id="ref-1"),
                                                         correlation_id="corr-t", producer="notifier")
        await session.commit()
    await settle(runtime)


class ApiDriver:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.db = api.db
        self.runtime = api.app.state.nvf.runtime

    async def publish_market(self) -> None:
        for o in OFFERS:
            body = {k: v for k, v in o.items() if k != "region"}
            body.update(care_area="cataract", window_start="2026-03-02", window_end="2026-04-30")
            assert (await self.api.post(o["region"], "/v1/offers", body)).status_code == 201
        for r in REQUESTS:
            body = {"request_id": r["request_id"], "care_area": "cataract", "window_start": "2026-03-02",
                    "window_end": "2026-06-30",
                    "patients": [{"case_ref": ref, "waiting_since": since} for ref, since in r["patients"]]}
            assert (await self.api.post(r["region"], "/v1/requests", body)).status_code == 201
        await settle(self.runtime)

    async def clear(self, round_id: str) -> None:
        response = await self.api.post("operator", "/v1/clearing-rounds",
                                       {"round_id": round_id, "care_area": "cataract", "as_of": AS_OF})
        assert response.status_code == 202, response.text
        await settle(self.runtime, [round_id])

    async def command(self, party: str, case_ref: str, command: str, args: dict[str, Any]) -> None:
        read = await self.api.get(party, f"/v1/cases/{case_ref}")
        assert read.status_code == 200, f"{party} {command} {case_ref}: {read.text}"
        action = ACTIONS_BY_COMMAND[command].path
        allowed = [a["action"] for a in (await self.api.get(party, f"/v1/cases/{case_ref}/allowed-actions"))
                   .json()["actions"]]
        assert action in allowed
        done = await self.api.post(party, f"/v1/cases/{case_ref}/{action}", args,
                                   headers={"If-Match": read.headers["etag"]})
        assert done.status_code == 200, done.text

    async def referral(self, case_ref: str) -> None:
        await _referral(self.runtime, case_ref)

    async def settle(self) -> None:
        await settle(self.runtime)


@asynccontextmanager
async def api_in_namespace(settings: Settings) -> AsyncIterator[Api]:
    """The API with its workers under a namespace of its own (stream prefix, schema or file, users)."""
    tag = uuid.uuid4().hex[:8]
    own = Settings(**{
        **settings.model_dump(), "stream_prefix": f"{settings.stream_prefix}-api{tag}", "api_rate": "100000/second",
        "db_schema": f"{settings.db_schema}_api" if settings.db_schema else None,
        "database_url": settings.database_url if settings.db_schema
        else settings.effective_database_url.replace("marketplace.db", f"api-{tag}.db")})
    db = Database.of(own)
    await db.create_all()
    app = create_app(own, own.redis_url or "", roles=ROLES, sweeper=False)
    import redis.asyncio as aioredis

    admin = aioredis.from_url(own.redis_url or "")
    try:
        async with (app.router.lifespan_context(app),
                    httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http):
            api = Api(app, http, own, db)
            api.set_clock(Clock(START))
            yield api
    finally:
        keys = [k async for k in admin.scan_iter(match=f"{own.stream_prefix}:*", count=500)]
        if keys:
            await admin.delete(*keys)
        await remove(admin, own.stream_prefix, all_parties())
        await admin.aclose()
        await db.drop_schema()
        await db.dispose()


async def test_the_same_market_through_the_api_and_on_the_bus(settings: Settings, database: Database,
                                                             redis_client: Any):
    async with marketplace(settings, database) as runtime:
        runtime.context.clock = Clock(START)
        await play(BusDriver(runtime))
        on_bus = await outcome(database)
    async with api_in_namespace(settings) as api:
        await play(ApiDriver(api))
        via_api = await outcome(api.db)
    bus_states, bus_matches, bus_timelines = on_bus
    assert set(bus_states.values()) >= {"closed", "withdrawn", "cancelled"}
    assert via_api[0] == bus_states
    assert via_api[1] == bus_matches
    assert via_api[2] == bus_timelines
