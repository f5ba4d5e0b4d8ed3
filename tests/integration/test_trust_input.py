"""A hostile or careless region's input against the real workers (Redis and the database): out of
bounds, reused event ids, poison, identity-shaped strings. Each is refused (or dead-lettered),
nothing of it is half-written, and the valid work around it goes on.

The parties' Redis users are on (the embedded Redis 6.2, or the configured one): each worker role
connects as its own user, and each party sends with its own credentials on its own stream."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select as core_select
from sqlmodel import SQLModel, select

from events import ClearingRoundCompleted, ClearingRoundRequested, new_envelope
from events.bounds import MAX_BODY_BYTES, MAX_PATIENTS, today
from events.envelope import parse_envelope, stable_event_id
from events.parties import channel_party
from marketplace.adapters.dead_letters import list_dead_letters
from marketplace.adapters.orm import (
    CaseRow,
    ClearingRoundRow,
    MatchRow,
    OfferRow,
    ProcessedEventRow,
    RejectionRow,
    RequestRow,
)
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.party_clients import PartyClients
from marketplace.parties import ingress_parties
from matchers.reference import regions
from tests.integration.harness import apply_access, marketplace, producer_of, publish_raw, settle
from tests.reliability.checks import eventually
from workers.app import ROLES
from workers.groups import ensure_group
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

START = today() + timedelta(days=7)
END = START + timedelta(days=60)
# A valid personnummer and a samordningsnummer (the Tax Agency's test series), and a name.
PNR, PNR_DASHED, PNR12, SAMORDNING = "8507099805", "850709-9805", "198507099805", "8507699802"
NAME = "Anna Andersson"


def _fast(settings: Any) -> Any:
    return settings.model_copy(update={"claim_idle_ms": 300, "claim_interval_ms": 100, "max_deliveries": 3,
                                       "batch_size": 50})


def _eid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _envelope(n: int, type_: str, producer: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event_id": _eid(n), "type": type_, "schema_version": 1, "occurred_at": "2026-11-01T08:00:00Z",
            "producer": producer, "correlation_id": f"corr-{n}", "payload": payload} | extra


def _offer(n: int, offer_id: str, region: str = "13", **changes: Any) -> dict[str, Any]:
    payload = {"offer_id": offer_id, "region": region, "unit_hsa_id": "SE2321000115-KT1", "care_area": "cataract",
               "capacity": 3, "window_start": START.isoformat(), "window_end": END.isoformat(), "price_sek": 9800}
    return _envelope(n, "offer.published", region, payload | changes)


def _request(n: int, request_id: str, case_refs: list[str], region: str = "25", **changes: Any) -> dict[str, Any]:
    payload = {"request_id": request_id, "region": region, "care_area": "cataract",
               "window_start": START.isoformat(), "window_end": END.isoformat(),
               "patients": [{"case_ref": ref, "waiting_since": "2026-06-01"} for ref in case_refs]}
    return _envelope(n, "request.published", region, payload | changes)


@asynccontextmanager
async def _market(settings: Any, database: Any, roles: tuple[str, ...] = ROLES
                  ) -> AsyncIterator[tuple[Runtime, PartyClients]]:
    """The workers, each role as its own Redis user, and every party's own client (the test's
    `redis_client` deletes the users afterwards)."""
    async with marketplace(settings, database, roles, access=True) as runtime, \
            PartyClients(settings.redis_url or "", runtime.credentials) as parties:
        yield runtime, parties


async def _publish(runtime: Runtime, parties: PartyClients, items: Sequence[Any]) -> None:
    """Each item on the ingress stream of the party it names, sent with that party's credentials (or
    region 01's, when it names no party we know), in order."""
    known = set(ingress_parties())
    for item in items:
        claimed = producer_of(item)
        party = claimed if claimed in known else "01"
        await publish_raw(parties.client(party), runtime.streams.ingress(party), [item])


async def _rows(database: Any, table: type[SQLModel]) -> list[Any]:
    async with database.session() as session:
        return list((await session.exec(select(table))).all())


async def _told(redis: Any, stream: str) -> list[Any]:
    payloads = []
    for _, fields in await redis.xrange(stream):
        envelope, payload = parse_envelope(fields[DATA_FIELD.encode()])
        assert envelope.type == "event.rejected"
        payloads.append(payload)
    return payloads


# --- bounds ------------------------------------------------------------------------------------

OUT_OF_BOUNDS = [
    (_offer(1, "off-1", capacity=2**63), "payload.capacity", "less_than_equal"),
    (_offer(2, "off-2", capacity=10_001), "payload.capacity", "less_than_equal"),
    (_offer(3, "off-3", price_sek=1e308), "payload.price_sek", "less_than_equal"),
    (_offer(4, "off-4", price_sek=-0.5), "payload.price_sek", "greater_than_equal"),
    (_offer(5, "off-5", window_start="0001-01-01"), "payload.window_start", "date_window"),
    (_offer(6, "off-6", window_end="9999-12-31"), "payload.window_end", "date_window"),
    (_offer(7, "off-" + "b" * 80), "payload.offer_id", "string_too_long"),
    (_offer(8, "off-8", care_area="c" * 65), "payload.care_area", "string_too_long"),
    (_offer(9, "off-9") | {"schema_version": 10**30}, "schema_version", "less_than_equal"),
    (_request(10, "req-10", [f"case-{n}" for n in range(MAX_PATIENTS + 1)]), "payload.patients", "too_long"),
    (_request(11, "req-11", ["case-11"], max_travel_km=1e9), "payload.max_travel_km", "less_than_equal"),
    (_request(12, "req-12", ["case-12"], excluded_regions=["01"] * 22), "payload.excluded_regions", "too_long"),
    (_offer(13, "off-13") | {"padding": "b" * (MAX_BODY_BYTES + 1)}, "body", "body_size"),
]


async def test_out_of_bounds_numbers_dates_and_strings_are_refused_naming_field_and_rule(
        settings, database, redis_client):
    bodies: list[Any] = [json.dumps(item) for item, _, _ in OUT_OF_BOUNDS]
    # A number JSON can write but no float can hold (Python reads it as infinity).
    bodies.append(json.dumps(_offer(14, "off-14")).replace('"price_sek": 9800', '"price_sek": 1e999'))
    good = [_offer(20, "off-20"), _request(21, "req-21", ["case-21"])]
    async with _market(settings, database) as (runtime, parties):
        await _publish(runtime, parties, [*bodies, *good])
        await settle(runtime)
        told = await _told(runtime.redis, runtime.streams.rejections)
        dead = await list_dead_letters(runtime.redis, runtime.streams.dead_letter)

    assert dead == []  # refused and told, never dead-lettered
    recorded = {(r.event_id, r.field, r.rule) for r in await _rows(database, RejectionRow)}
    for n, (_, field, rule) in enumerate(OUT_OF_BOUNDS, 1):
        eid = _eid(13 if field == "body" else n)
        assert (eid, field, rule) in recorded, (field, rule, recorded)
        assert any(t.rejected_event_id == eid and (t.field, t.rule) == (field, rule) for t in told)
    assert any(r.event_id == _eid(14) and r.field == "payload.price_sek" for r in await _rows(database, RejectionRow))
    assert len(told) == len(bodies)
    # Nothing of the refused items was written; the valid ones behind them were.
    assert [o.offer_id for o in await _rows(database, OfferRow)] == ["off-20"]
    assert [r.request_id for r in await _rows(database, RequestRow)] == ["req-21"]
    assert [c.case_ref for c in await _rows(database, CaseRow)] == ["case-21"]


async def test_a_bad_item_written_past_intake_is_left_out_and_the_round_clears_the_rest(
        settings, database, redis_client):
    async with _market(settings, database) as (runtime, parties):
        await _publish(runtime, parties, [_offer(1, "off-1"), _request(2, "req-2", ["case-2"])])
        await settle(runtime)
        # Rows no intake would take, written straight into the tables (an old version, a hand edit).
        async with database.session() as session:
            for offer_id, price, capacity in (("off-bd1", 1e300, 5), ("off-bd2", 9000.0, 2**31 - 1)):
                session.add(OfferRow(offer_id=offer_id, region="01", unit_hsa_id="SE2321000016-X",
                                     care_area="cataract", capacity=capacity, remaining=capacity,
                                     window_start=START, window_end=END, price_sek=price, status="open",
                                     event_id=str(uuid.uuid4())))
            session.add(OfferRow(offer_id=f"off {NAME}", region="01", unit_hsa_id="SE2321000016-X",
                                 care_area="cataract", capacity=1, remaining=1, window_start=date(1, 1, 1),
                                 window_end=END, price_sek=1.0, status="open", event_id=str(uuid.uuid4())))
            await session.commit()
        clearing = new_envelope(ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=START),
                                producer="operator")
        await _publish(runtime, parties, [clearing])
        await settle(runtime, ["rnd-1"])
        completed = [parse_envelope(f[DATA_FIELD.encode()])[1] for _, f in
                     await runtime.redis.xrange(runtime.streams.matches)]

    (round_row,) = await _rows(database, ClearingRoundRow)
    assert round_row.placed == 1
    (match,) = await _rows(database, MatchRow)
    assert (match.case_ref, match.offer_id) == ("case-2", "off-1")
    (summary,) = [p for p in completed if getattr(p, "TYPE", "") == "clearing.completed"]
    assert isinstance(summary, ClearingRoundCompleted)
    assert summary.left_out == {"offer.price_sek": 1, "offer.capacity": 1, "offer.offer_id": 1}


# --- same id, other content ------------------------------------------------------------------------

async def test_a_reused_event_id_with_other_content_is_refused_and_a_redelivery_is_skipped(
        settings, database, redis_client):
    first = json.dumps(_offer(1, "off-1"))
    other = json.dumps(_offer(1, "off-1", capacity=40))
    async with _market(settings, database) as (runtime, parties):
        await _publish(runtime, parties, [first])
        await settle(runtime)
        # The same bytes again (a redelivery), other content under the same id (twice), then new work.
        await _publish(runtime, parties, [first, other, other, _offer(2, "off-2")])
        await settle(runtime)
        told = await _told(runtime.redis, runtime.streams.rejections)

    offers = {o.offer_id: o.capacity for o in await _rows(database, OfferRow)}
    assert offers == {"off-1": 3, "off-2": 3}
    (rejection,) = await _rows(database, RejectionRow)
    assert (rejection.event_id, rejection.field, rejection.rule) == (_eid(1), "event_id", "event_id_reused")
    assert [(t.rejected_event_id, t.rule) for t in told] == [(_eid(1), "event_id_reused")]
    digests = {r.event_id: r.digest for r in await _rows(database, ProcessedEventRow) if r.consumer == "intake"}
    first_envelope, _ = parse_envelope(first)
    assert digests[_eid(1)] == first_envelope.digest()


# --- poison ------------------------------------------------------------------------------------

POISON = {
    "deep": {DATA_FIELD: b'{"a":' * 5000 + b"1" + b"}" * 5000},
    "deep_list": {DATA_FIELD: b"[" * 200_000 + b"]" * 200_000},
    "field_name_not_utf8": {b"\xff\xfe" + DATA_FIELD.encode(): b"{}", DATA_FIELD: b"{}"},
    "body_not_utf8": {DATA_FIELD: b'{"event_id": "\xff\xfe"}'},
    "key_not_utf8": {DATA_FIELD: b'{"\\udc80": 1}'},
    "no_data_field": {"something": "else"},
    "not_json": {DATA_FIELD: b"{this is not json"},
}


async def test_poison_reaches_the_dead_letters_through_reader_and_claimer_and_holds_up_nothing(
        settings, database, redis_client):
    settings = _fast(settings)
    stream = f"{settings.stream_prefix}:ingress:13"  # region 13 sends the poison and the valid offers around it
    async with PartyClients(settings.redis_url or "", await apply_access(settings)) as parties:
        region = parties.client("13")
        # Some poison is first read by a consumer that dies at once, before the workers start: only
        # the claimer sees it.
        await ensure_group(redis_client, stream, "intake")
        for name in ("deep", "field_name_not_utf8", "no_data_field"):
            await region.xadd(stream, POISON[name])
        taken = await redis_client.xreadgroup("intake", "dead-consumer", {stream: ">"}, count=3)
        assert len(taken[0][1]) == 3
        async with _market(settings, database, roles=("intake",)) as (runtime, _):
            assert runtime.streams.ingress("13") == stream
            # The rest, mixed with valid entries in the same batch, goes through the reader first.
            async with region.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, {DATA_FIELD: json.dumps(_offer(1, "off-1"))})
                for name in ("deep_list", "body_not_utf8", "key_not_utf8", "not_json"):
                    pipe.xadd(stream, POISON[name])
                    pipe.xadd(stream, {DATA_FIELD: json.dumps(_offer(len(name), f"off-{len(name)}"))})
                await pipe.execute()

            async def all_dead() -> bool:
                return await redis_client.xlen(runtime.streams.dead_letter) == len(POISON)

            await eventually(all_dead, 60, "every poison entry in the dead letters")
            letters = await list_dead_letters(redis_client, runtime.streams.dead_letter)
            pending = (await redis_client.xpending(stream, "intake"))["pending"]

    assert pending == 0
    assert all(letter.deliveries == 3 and letter.reason.startswith("unreadable: ") for letter in letters)
    reasons = sorted(letter.reason.removeprefix("unreadable: ") for letter in letters)
    assert reasons == sorted(["json_depth", "json_depth", "field_name_utf8", "utf8", "utf8", "no_data_field",
                              "json"])
    offers = {o.offer_id for o in await _rows(database, OfferRow)}
    assert offers == {"off-1", *(f"off-{len(n)}" for n in ("deep_list", "body_not_utf8", "key_not_utf8", "not_json"))}
    assert await _rows(database, RejectionRow) == []


# --- no identity outside encrypted bodies ------------------------------------------------------

IDENTITY = re.compile("|".join([PNR, PNR_DASHED, PNR12, SAMORDNING, "850709", "anna", "andersson"]), re.I)


def _identity_inputs() -> list[Any]:
    """Identity-shaped strings in every field a region controls, each in an otherwise valid event."""
    n = iter(range(100, 1000))
    items: list[Any] = []
    for bad in (f"case-{PNR}", f"case-{PNR_DASHED}", f"case-{PNR[:4]}b{PNR[4:]}", NAME, "case-anna-andersson",
                f"case-{SAMORDNING}"):
        items += [_offer(next(n), bad), _request(next(n), bad, ["case-1"]), _request(next(n), "req-1", [bad]),
                  _envelope(next(n), "case.command", "25", {"case_ref": bad, "command": "withdraw",
                                                            "args": {"reason": "other"}}),
                  _envelope(next(n), "clearing.requested", "operator",
                            {"round_id": bad, "care_area": "cataract", "as_of": START.isoformat()}),
                  _envelope(next(n), "request.withdrawn", "25", {"request_id": "req-5", "region": "25",
                                                                 "case_refs": [bad]}),
                  _offer(next(n), "off-2") | {"correlation_id": bad}]
    items += [
        _offer(next(n), "off-3", unit_hsa_id=f"SE{PNR}-KT1"),
        _offer(next(n), "off-4", unit_hsa_id="SE2321000016-ANNAANDERSSON"),
        _offer(next(n), "off-5", care_area="anna-andersson"),
        _offer(next(n), "off-6") | {"type": f"{NAME} {PNR}"},
        _offer(next(n), "off-7") | {"producer": NAME},
        _offer(next(n), "off-8") | {"event_id": f"{PNR12[:8]}-{PNR12[8:]}-4000-8000-000000000001"},
        _offer(next(n), "off-9") | {NAME: PNR},
        _offer(next(n), "off-10", **{"anna_andersson": PNR}),
        _request(next(n), "req-2", ["case-2"], region=PNR[:2]),
        _envelope(next(n), "request.withdrawn", "25", {"request_id": "req-5", "region": "25",
                                                       "reason_code": NAME}),
        _envelope(next(n), "offer.withdrawn", "13", {"offer_id": "off-20", "region": "13", "reason": NAME}),
        _envelope(next(n), "case.command", "25", {"case_ref": "case-5", "command": "withdraw",
                                                  "args": {"reason": "other", "note": f"{NAME} {PNR}"}}),
        _envelope(next(n), "case.command", "25", {"case_ref": "case-5", "command": "record_payment",
                                                  "args": {"payment_ref": f"pay-{PNR_DASHED}", "amount_sek": 1}}),
        _envelope(next(n), "case.command", "25", {"case_ref": "case-5", "command": "withdraw",
                                                  "args": {"anna_andersson": 1, "reason": "other"}}),
        _envelope(next(n), "case.command", "25", {"case_ref": "case-5", "command": "cancel",
                                                  "args": {"reason": "anna_andersson"}}),
    ]
    return items


def _secure_identity_inputs() -> list[Any]:
    """What region 25 controls on its secure-message streams (`sdk:submitted:25`, `sdk:receipts:25`):
    identity-shaped case refs, correlation ids, and sealed bodies and receipts that are not what they
    claim (the base64 alphabet holds a personnummer and a name)."""
    n = iter(range(1000, 1100))
    opaque = [f"{PNR12}AnnaAndersson", f"{PNR12}AnnaAnderssonAAA", f"{PNR}{SAMORDNING}AnnaAndersson="]
    items: list[Any] = []
    for bad in opaque:
        items += [_envelope(next(n), "sdk.message.submitted", "25", {"case_ref": "case-5", "sealed": bad}),
                  _envelope(next(n), "sdk.receipt.submitted", "25", {"receipt": bad})]
    for bad in (f"case-{PNR}", NAME, "case-anna-andersson"):
        items += [_envelope(next(n), "sdk.message.submitted", "25", {"case_ref": bad, "sealed": "AAAA"}),
                  _envelope(next(n), "sdk.message.submitted", "25", {"case_ref": "case-5", "sealed": "AAAA"})
                  | {"correlation_id": bad},
                  _envelope(next(n), "sdk.receipt.submitted", "25", {"receipt": "AAAA"}) | {"correlation_id": bad}]
    return items


async def test_identity_shaped_strings_reach_no_stream_row_or_log_line(
        settings, database, redis_client, debug_logs, capfd):
    inputs, secure = _identity_inputs(), _secure_identity_inputs()
    good = [_offer(1, "off-20"), _request(2, "req-5", ["case-5"])]
    async with _market(settings, database) as (runtime, parties):
        st = runtime.streams
        await _publish(runtime, parties, good)
        await settle(runtime)
        await _publish(runtime, parties, [*inputs, _offer(3, "off-21")])
        region = parties.client("25")
        for item in secure:
            target = st.secure_submissions("25") if item["type"] == "sdk.message.submitted" else \
                st.secure_receipts("25")
            await publish_raw(region, target, [item])
        await settle(runtime)
        streams = [k.decode() async for k in redis_client.scan_iter(match=f"{settings.stream_prefix}:*")
                   if await redis_client.type(k) == b"stream"]
        # Every stream of the marketplace but those the parties write themselves (their ingress and
        # secure-message streams), which hold what they sent.
        entries: list[tuple[str, Any]] = []
        written: list[tuple[str, Any]] = []
        for name in streams:
            rows = [(name, fields) for _, fields in await redis_client.xrange(name)]
            (written if channel_party(st, name) is not None else entries).extend(rows)
        inbox_25 = {str(parse_envelope(f[DATA_FIELD.encode()])[0].event_id)
                    for _, f in await redis_client.xrange(st.inbox(regions()["25"].org_number))}
    # The scan finds what the regions wrote (their own streams): it would find a leak.
    shaped = sum(bool(IDENTITY.search(json.dumps(i))) for i in [*inputs, *secure])
    assert shaped > 50 and sum(bool(IDENTITY.search(str(f))) for _, f in written) == shaped
    rejections = await _rows(database, RejectionRow)
    # Every one refused and told: at intake, or by the notifier (a submission it cannot open is
    # answered the SDK way, with a REJECTED receipt in the submitter's inbox).
    secure_ids = {e["event_id"] for e in secure}
    assert len([r for r in rejections if r.event_id not in secure_ids]) == len(inputs)
    refused_secure = {r.event_id for r in rejections if r.event_id in secure_ids}
    answered = {e["event_id"] for e in secure
                if str(stable_event_id("sdk.refused", e["event_id"])) in inbox_25}
    assert refused_secure and answered and refused_secure | answered == secure_ids
    assert {o.offer_id for o in await _rows(database, OfferRow)} == {"off-20", "off-21"}
    assert [c.case_ref for c in await _rows(database, CaseRow)] == ["case-5"]
    found = []
    for name, fields in entries:
        for key, value in fields.items():
            text = key.decode() + "=" + value.decode("utf-8", "replace")
            if IDENTITY.search(text):
                found.append((name, text[:200]))
    async with database.session() as session:
        connection = await session.connection()
        for table in SQLModel.metadata.sorted_tables:
            for row in (await connection.execute(core_select(table))).all():
                text = json.dumps([str(v) for v in row], ensure_ascii=False)
                if IDENTITY.search(text):
                    found.append((table.name, text[:200]))
    logs = capfd.readouterr()
    lines = (logs.out + logs.err).splitlines()
    for line in lines:
        if IDENTITY.search(line):
            found.append(("log", line[:200]))
    assert found == []
    assert entries and any(n.endswith(":rejections") for n, _ in entries)
    # The scan saw DEBUG lines too (the outbox relay writes some for every batch it publishes).
    assert any('"level": "debug"' in line for line in lines)


async def test_a_command_on_another_regions_case_is_refused_like_one_on_no_case(settings, database, redis_client):
    async with _market(settings, database) as (runtime, parties):
        await _publish(runtime, parties, [_request(1, "req-1", ["case-1"])])
        await settle(runtime)
        foreign = _envelope(2, "case.command", "13", {"case_ref": "case-1", "command": "withdraw",
                                                      "args": {"reason": "other"}})
        missing = _envelope(3, "case.command", "13", {"case_ref": "case-2", "command": "withdraw",
                                                      "args": {"reason": "other"}})
        foreign_offer = _envelope(4, "request.withdrawn", "13", {"request_id": "req-1", "region": "13"})
        missing_offer = _envelope(5, "request.withdrawn", "13", {"request_id": "req-2", "region": "13"})
        await _publish(runtime, parties, [foreign, missing, foreign_offer, missing_offer])
        await settle(runtime)
        told = {t.rejected_event_id: (t.field, t.rule, t.message) for t in
                await _told(runtime.redis, runtime.streams.rejections)}

    assert told[_eid(2)] == told[_eid(3)] and told[_eid(2)][1] == "known_case"
    assert told[_eid(4)] == told[_eid(5)] and told[_eid(4)][1] == "known_request"
    (case,) = await _rows(database, CaseRow)
    assert case.state == "on_book"


def test_dates_in_this_file_are_inside_the_window():
    assert datetime.now(UTC).date() < START < END
