"""Trust between parties: who sent an entry is the channel it came on, never what it claims.

A real Redis with every party's ACL user applied (Redis 7 with REDIS_URL set: read and write apart,
selectors; else the embedded Redis 6.2: one key set per user), real databases, each worker role
connected as its own user; the regions and the operator publish with their own credentials, as
their own systems would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import pytest
import structlog
from redis.exceptions import NoPermissionError
from sqlmodel import col, select

from demo_regions.scenario import region_events
from events import (
    CaseCommandIssued,
    CaseStateChanged,
    ClearingRoundRequested,
    MessageSent,
    OfferPublished,
    PatientNotPlaced,
    RequestWithdrawn,
    SecureMessageSubmitted,
    SecureReceiptSubmitted,
    Streams,
    new_envelope,
)
from events.envelope import parse_envelope
from events.parties import RULE_PRODUCER_IS_CHANNEL
from marketplace.access import supports_selectors
from marketplace.adapters.message_orm import MessageReceiptRow, SecureMessageRow
from marketplace.adapters.orm import CaseAnnotationRow, CaseEventRow, CaseRow, ClearingRoundRow, OfferRow, RejectionRow
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.redis_users import server_version
from marketplace.lifecycle.timeline import verify
from marketplace.log_config import configure_logging
from marketplace.services.timeline import load_events, load_timeline
from matchers.reference import regions
from matchers.scenario import parse_scenario
from tests.conftest import SESSION_LOG_LEVEL
from tests.integration.harness import apply_access, marketplace, publish_raw, settle
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

AS_OF = date(2026, 3, 2)
REF = "case-25-1"


def _scenario() -> Any:
    return parse_scenario({
        "name": "trust", "as_of": AS_OF.isoformat(), "agreements": [],
        "offers": [{"offer_id": "off-01", "region": "01", "unit_hsa_id": "SE2321000016-KATA1",
                    "care_area": "cataract", "capacity": 2, "window_start": "2026-03-02",
                    "window_end": "2026-04-30", "price_sek": 9800}],
        "requests": [{"request_id": "req-25", "region": "25", "care_area": "cataract", "window_start": "2026-03-02",
                      "window_end": "2026-06-30", "max_price_sek": None, "max_travel_km": None,
                      "excluded_regions": [], "requires_agreement": False,
                      "patients": [{"case_ref": REF, "waiting_since": "2025-12-20"}]}],
    })


def _offer(offer_id: str, region: str, producer: str) -> Any:
    return new_envelope(OfferPublished(offer_id=offer_id, region=region, unit_hsa_id="SE2321000016-KATA1",
                                       care_area="cataract", capacity=1, window_start=date(2026, 3, 9),
                                       window_end=date(2026, 4, 17), price_sek=9800), producer=producer)


def _command(name: str, producer: str, **args: Any) -> Any:
    return new_envelope(CaseCommandIssued(case_ref=REF, command=name, args=args), producer=producer)


@pytest.fixture
async def market(settings: Any, database: Any, redis_client: Any) -> AsyncIterator[tuple[Runtime, PartyClients]]:
    # redis_client deletes the users afterwards (it is torn down after this fixture). Log lines as
    # the product writes them off a terminal: one JSON object each (the console renderer's rich
    # tracebacks of ~150 subscribers stopping take minutes on a busy machine).
    configure_logging("json", "INFO")
    try:
        async with marketplace(settings, database, access=True) as runtime, \
                PartyClients(settings.redis_url or "", runtime.credentials) as parties:
            yield runtime, parties
    finally:
        configure_logging("json", SESSION_LOG_LEVEL)


async def _send(parties: PartyClients, runtime: Runtime, party: str, *items: Any) -> None:
    """`party` appends `items` to its own ingress stream with its own credentials."""
    await publish_raw(parties.client(party), runtime.streams.ingress(party), list(items))


async def _refusals(database: Any, event_id: Any) -> list[RejectionRow]:
    async with database.session() as session:
        return list((await session.exec(select(RejectionRow).where(RejectionRow.event_id == str(event_id)))).all())


async def _told(runtime: Runtime, party: str) -> list[Any]:
    """The rejections on `party`'s outgoing stream, read as that party would read them."""
    entries = await runtime.redis.xrange(runtime.streams.outgoing(party))
    return [parse_envelope(fields[DATA_FIELD.encode()])[1] for _, fields in entries]


async def _case(database: Any) -> CaseRow:
    async with database.session() as session:
        row = await session.get(CaseRow, REF)
    assert row is not None
    return row


async def _matched(runtime: Runtime, parties: PartyClients, database: Any) -> CaseRow:
    """Regions 25 and 01 publish as themselves; the operator clears; case-25-1 holds off-01."""
    for envelope in region_events(_scenario(), run_id="t"):
        await _send(parties, runtime, envelope.producer, envelope)
    await settle(runtime)
    round_ = new_envelope(ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=AS_OF),
                          producer="operator")
    await _send(parties, runtime, "operator", round_)
    await settle(runtime, ["rnd-1"])
    case = await _case(database)
    assert case.state == "match_proposed"
    return case


async def test_a_region_can_append_only_to_its_own_streams(market: Any) -> None:
    runtime, parties = market
    st = runtime.streams
    me = parties.client("01")
    body = {DATA_FIELD: _offer("off-x1", "01", "01").to_json()}
    others = [st.ingress("03"), st.ingress("operator"), st.ingress("scheduler"), st.book("cataract"), st.matches,
              st.cases, st.messages, st.rejections, st.dead_letter, st.secure_submissions("03"),
              st.secure_receipts("03"), st.inbox(regions()["03"].org_number), st.outgoing("03"), st.case_feed("03")]
    for stream in others:
        with pytest.raises(NoPermissionError):
            await me.xadd(stream, body)
    # The server refused every one: none of those streams got an entry from it.
    assert [s for s in others if await runtime.redis.xlen(s)] == []
    await me.xadd(st.ingress("01"), body)
    await settle(runtime)
    async with runtime.db.session() as session:
        assert (await session.get(OfferRow, "off-x1")) is not None


ORG_01 = regions()["01"].org_number
# The streams a role is tried on, by name.
STREAMS: dict[str, Callable[[Streams], str]] = {
    "ingress:01": lambda st: st.ingress("01"), "ingress:operator": lambda st: st.ingress("operator"),
    "ingress:scheduler": lambda st: st.ingress("scheduler"), "book:cataract": lambda st: st.book("cataract"),
    "matches": lambda st: st.matches, "cases": lambda st: st.cases, "messages": lambda st: st.messages,
    "rejections": lambda st: st.rejections, "dead-letter": lambda st: st.dead_letter,
    "to:01": lambda st: st.outgoing("01"), "to:01:cases": lambda st: st.case_feed("01"),
    "sdk:inbox:01": lambda st: st.inbox(ORG_01),
    "sdk:submitted:01": lambda st: st.secure_submissions("01"), "sdk:receipts:01": lambda st: st.secure_receipts("01"),
}
# What each role writes (README, "Who may touch what").
OWN = {
    "intake": ["book:cataract", "cases", "to:01:cases", "rejections", "to:01", "dead-letter"],
    "matcher": ["matches", "cases", "to:01:cases", "rejections", "dead-letter"],
    "notifier": ["messages", "cases", "to:01:cases", "sdk:inbox:01", "rejections", "to:01", "dead-letter"],
    "timeline": ["rejections", "dead-letter"],
    "scheduler": ["ingress:scheduler"],
    "operator": ["ingress:operator"],
}
# Redis 6.2 has one key set per user for all its commands (README, "Redis 7 and Redis 6.2"): there the
# server cannot refuse these; the producer check downstream refuses what lands there.
CONSUMED_ON_62 = "Redis 6.2 has no read/write split: a role may append to the streams it consumes"
OPERATOR_ON_62 = "Redis 6.2 has no read/write split: the operator reads, and so may append to, every stream"
NOT_OWN = [
    *(("intake", name, None) for name in ("matches", "messages", "sdk:inbox:01", "sdk:submitted:01",
                                          "sdk:receipts:01")),
    *(("intake", name, CONSUMED_ON_62) for name in ("ingress:01", "ingress:operator", "ingress:scheduler")),
    *(("matcher", name, None) for name in ("messages", "ingress:01", "ingress:operator", "to:01", "sdk:inbox:01",
                                           "sdk:submitted:01")),
    ("matcher", "book:cataract", CONSUMED_ON_62),
    *(("notifier", name, None) for name in ("matches", "book:cataract", "ingress:01", "ingress:operator")),
    *(("notifier", name, CONSUMED_ON_62) for name in ("sdk:submitted:01", "sdk:receipts:01")),
    *(("timeline", name, None) for name in ("ingress:01", "to:01", "to:01:cases", "sdk:inbox:01",
                                            "sdk:submitted:01")),
    *(("timeline", name, CONSUMED_ON_62) for name in ("cases", "matches", "messages", "book:cataract")),
    *(("scheduler", name, None) for name in ("ingress:operator", "ingress:01", "book:cataract", "cases", "matches",
                                             "messages", "rejections", "to:01", "to:01:cases")),
    *(("operator", name, OPERATOR_ON_62) for name in ("ingress:scheduler", "ingress:01", "book:cataract", "cases",
                                                      "matches", "messages", "rejections", "sdk:submitted:01")),
]


@pytest.fixture
async def roles(settings: Any, redis_client: Any) -> AsyncIterator[tuple[Streams, PartyClients]]:
    """Every party's user on the server (no workers: only the server's answers are tried here)."""
    async with PartyClients(settings.redis_url or "", await apply_access(settings)) as parties:
        yield Streams(settings.stream_prefix), parties


@pytest.mark.parametrize(("role", "name", "not_on_62"), [pytest.param(*case, id=f"{case[0]}-{case[1]}")
                                                         for case in NOT_OWN])
async def test_a_worker_role_cannot_append_to_a_stream_it_does_not_own(
        role: str, name: str, not_on_62: str | None, roles: Any, redis_client: Any) -> None:
    if not_on_62 and not supports_selectors(await server_version(redis_client)):
        pytest.skip(not_on_62)
    st, parties = roles
    stream = STREAMS[name](st)
    with pytest.raises(NoPermissionError):
        await parties.client(role).xadd(stream, {DATA_FIELD: "{}"})
    assert await redis_client.xlen(stream) == 0  # the server refused it: nothing was written


@pytest.mark.parametrize("role", list(OWN))
async def test_a_worker_role_appends_to_the_streams_it_owns(role: str, roles: Any, redis_client: Any) -> None:
    st, parties = roles
    for name in OWN[role]:
        await parties.client(role).xadd(STREAMS[name](st), {DATA_FIELD: "{}"})
    assert [await redis_client.xlen(STREAMS[name](st)) for name in OWN[role]] == [1] * len(OWN[role])


async def test_a_regions_credentials_cannot_read_another_regions_stream_or_inbox(market: Any) -> None:
    runtime, parties = market
    st = runtime.streams
    # Something to read everywhere: region 02 publishes an offer and gets a refusal back.
    await _send(parties, runtime, "03", _offer("off-03", "03", "03"), _offer("off-bd", "03", "04"))
    await settle(runtime)
    assert await runtime.redis.xlen(st.outgoing("03")) == 1
    await runtime.redis.xadd(st.inbox(regions()["03"].org_number), {DATA_FIELD: "{}"})
    me = parties.client("01")
    for stream in (st.outgoing("03"), st.case_feed("03"), st.inbox(regions()["03"].org_number), st.ingress("03"),
                   st.book("cataract"), st.cases, st.matches, st.rejections, st.dead_letter):
        with pytest.raises(NoPermissionError):
            await me.xrange(stream)
        with pytest.raises(NoPermissionError):
            await me.xread({stream: "0-0"}, count=1)
    with pytest.raises(NoPermissionError):
        await me.xreadgroup("intake", "thief", {st.ingress("03"): ">"}, count=1)
    # What is addressed to it, it reads.
    assert await me.xrange(st.outgoing("01")) == []
    assert await me.xrange(st.case_feed("01")) == []
    assert await me.xrange(st.inbox(regions()["01"].org_number)) == []


async def test_a_region_reads_the_events_of_its_own_cases_on_its_feed_and_no_others(market: Any,
                                                                                    database: Any) -> None:
    runtime, parties = market
    st = runtime.streams
    await _matched(runtime, parties, database)  # case-25-1 (home region 25) holds a slot of region 01

    async def feed(region: str) -> list[CaseStateChanged]:
        entries = await parties.client(region).xrange(st.case_feed(region))
        payloads = [parse_envelope(fields[DATA_FIELD.encode()])[1] for _, fields in entries]
        assert all(isinstance(p, CaseStateChanged) for p in payloads)
        return [p for p in payloads if isinstance(p, CaseStateChanged)]

    home, provider = await feed("25"), await feed("01")
    assert [(e.case_ref, e.to_state) for e in home][-1] == (REF, "match_proposed")
    assert [e.event_type for e in provider] == ["case.match_held"]  # told from its match on
    held = provider[0].details
    assert (held["home_region"], held["providing_region"], held["care_area"]) == ("25", "01", "cataract")
    # No patient identity: the entries hold what the `cases` stream holds, and the case's standing.
    assert {e.case_ref for e in home + provider} == {REF}
    # A region the case is nothing to hears nothing of it.
    assert await feed("03") == []


async def test_a_region_publishing_as_another_is_refused_by_name_and_told(market: Any, database: Any) -> None:
    runtime, parties = market
    forged = _offer("off-frgd", "03", "03")  # region 01 writes region 03's name on its own stream
    good = _offer("off-gd", "01", "01")
    await _send(parties, runtime, "01", forged, good)
    await settle(runtime)
    async with database.session() as session:
        offers = set((await session.exec(select(OfferRow.offer_id))).all())
    assert offers == {"off-gd"}  # the valid offer behind it went on
    (refusal,) = await _refusals(database, forged.event_id)
    assert (refusal.field, refusal.rule, refusal.producer) == ("producer", RULE_PRODUCER_IS_CHANNEL, "01")
    assert refusal.stream == runtime.streams.ingress("01")
    # The real sender is told, on its own stream; the region it named hears nothing.
    told = await _told(runtime, "01")
    assert [(t.rejected_event_id, t.rule) for t in told] == [(str(forged.event_id), RULE_PRODUCER_IS_CHANNEL)]
    assert await _told(runtime, "03") == []


async def test_a_region_cannot_act_on_another_regions_case_nor_request_a_round(market: Any, database: Any) -> None:
    runtime, parties = market
    for envelope in region_events(_scenario(), run_id="t"):
        await _send(parties, runtime, envelope.producer, envelope)
    await settle(runtime)
    # A region asking for a clearing round, as itself: refused; nothing cleared.
    asked = new_envelope(ClearingRoundRequested(round_id="rnd-13", care_area="cataract", as_of=AS_OF), producer="13")
    await _send(parties, runtime, "13", asked)
    await settle(runtime)
    (refusal,) = await _refusals(database, asked.event_id)
    assert refusal.rule == "clearing_requested_by_operator"
    async with database.session() as session:
        assert (await session.get(ClearingRoundRow, "rnd-13")) is None
    assert (await _case(database)).state == "on_book"

    round_ = new_envelope(ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=AS_OF),
                          producer="operator")
    await _send(parties, runtime, "operator", round_)
    await settle(runtime, ["rnd-1"])
    before = await _case(database)
    assert before.state == "match_proposed"
    match_id = before.current_match_id

    # Region 13 is no party to the case: as itself, as the provider, as the home region.
    as_itself = _command("accept_match", "13", match_id=match_id)
    as_provider = _command("accept_match", "01", match_id=match_id)
    withdraw_theirs = new_envelope(RequestWithdrawn(request_id="req-25", region="25"), producer="13")
    withdraw_as_home = new_envelope(RequestWithdrawn(request_id="req-25", region="25"), producer="25")
    await _send(parties, runtime, "13", as_itself, as_provider, withdraw_theirs, withdraw_as_home)
    await settle(runtime)
    rules = {(await _refusals(database, e.event_id))[0].rule
             for e in (as_itself, as_provider, withdraw_theirs, withdraw_as_home)}
    # A case that is not its own is refused exactly like one that does not exist (`known_case`).
    assert rules == {"known_case", RULE_PRODUCER_IS_CHANNEL, "producer_is_region"}
    assert sorted(t.rule for t in await _told(runtime, "13")) == sorted([
        "clearing_requested_by_operator", "known_case", RULE_PRODUCER_IS_CHANNEL, "producer_is_region",
        RULE_PRODUCER_IS_CHANNEL])
    after = await _case(database)
    assert (after.state, after.version) == (before.state, before.version)

    # The provider itself goes on.
    await _send(parties, runtime, "01", _command("accept_match", "01", match_id=match_id))
    await settle(runtime)
    assert (await _case(database)).state == "provider_accepted"


async def test_a_region_posing_as_operator_or_scheduler_is_refused(market: Any, database: Any) -> None:
    runtime, parties = market
    before = await _matched(runtime, parties, database)
    st = runtime.streams
    home = parties.client("25")
    cancel = _command("cancel", "operator", reason="entered_in_error")
    expire = _command("expire_hold", "scheduler", match_id=before.current_match_id, due_at="2026-03-04T08:00:00Z")
    # Not on the operator's or the scheduler's stream: the server says no.
    for stream in (st.ingress("operator"), st.ingress("scheduler")):
        with pytest.raises(NoPermissionError):
            await home.xadd(stream, {DATA_FIELD: cancel.to_json()})
    # On its own stream, in their names: refused by the channel; as itself, by the case's rules.
    expire_as_itself = _command("expire_hold", "25", match_id=before.current_match_id,
                                due_at="2026-03-04T08:00:00Z")
    await _send(parties, runtime, "25", cancel, expire, expire_as_itself)
    await settle(runtime)
    assert (await _refusals(database, cancel.event_id))[0].rule == RULE_PRODUCER_IS_CHANNEL
    assert (await _refusals(database, expire.event_id))[0].rule == RULE_PRODUCER_IS_CHANNEL
    assert (await _refusals(database, expire_as_itself.event_id))[0].rule == "party_to_case"
    after = await _case(database)
    assert (after.state, after.version) == (before.state, before.version)
    # The operator, on its own stream, may.
    await _send(parties, runtime, "operator", _command("cancel", "operator", reason="entered_in_error"))
    await settle(runtime)
    assert (await _case(database)).state == "cancelled"


async def test_forged_entries_downstream_are_refused_recorded_and_never_applied(market: Any, database: Any) -> None:
    runtime, parties = market
    st = runtime.streams
    case = await _matched(runtime, parties, database)
    async with database.session() as session:
        timeline_before = len(await load_timeline(session, REF))
        messages_before = len((await session.exec(select(SecureMessageRow))).all())
        receipts_before = len((await session.exec(select(MessageReceiptRow))).all())
    forged = {
        # A clearing round straight onto a book partition, in the operator's name.
        st.book("cataract"): new_envelope(
            ClearingRoundRequested(round_id="rnd-frgd", care_area="cataract", as_of=AS_OF), producer="operator"),
        # A patient "not placed" for a case that is placed: would land on its timeline.
        st.matches: new_envelope(PatientNotPlaced(round_id="rnd-frgd", case_ref=REF, request_id="req-25",
                                                  care_area="cataract", requesting_region="25",
                                                  reason="no_feasible_offer"), producer="01"),
        # A hold released with a notice to the provider: the notifier would sign and send it.
        st.cases: new_envelope(CaseStateChanged(
            case_ref=REF, from_state="match_proposed", to_state="on_book", version=case.version + 1,
            event_type="case.hold_released",
            details={"notify_provider": True, "match_id": case.current_match_id, "offer_id": "off-01",
                     "unit_hsa_id": "SE2321000016-KATA1", "providing_region": "01"}), producer="01"),
        # A message "sent": would land on the timeline.
        st.messages: new_envelope(MessageSent(message_id="msg-frgd", case_ref=REF, message_type="match.notice",
                                              sender="202100-9994", recipient=regions()["25"].org_number),
                                  producer="25"),
        # A sealed submission on region 25's stream, in region 01's name.
        st.secure_submissions("25"): new_envelope(SecureMessageSubmitted(case_ref=REF, sealed="AAAA"),
                                                  producer="01"),
        # A business receipt on region 25's stream, in region 01's name: would record a receipt.
        st.secure_receipts("25"): new_envelope(SecureReceiptSubmitted(receipt="AAAA"), producer="01"),
    }
    # A region's own credentials cannot even write there (the ACL); an admin client can (the check).
    for stream, envelope in forged.items():
        with pytest.raises(NoPermissionError):
            await parties.client("01").xadd(stream, {DATA_FIELD: envelope.to_json()})
    with structlog.testing.capture_logs() as logs:
        for stream, envelope in forged.items():
            await publish_raw(runtime.redis, stream, [envelope])
        await settle(runtime)
    # Each refused by every group that reads its stream, with a row and a log line.
    expected = {(st.book("cataract"), "matcher"), (st.matches, "timeline"), (st.cases, "notifier"),
                (st.cases, "timeline"), (st.messages, "timeline"), (st.secure_submissions("25"), "notifier"),
                (st.secure_receipts("25"), "notifier"),
                # The free-capacity feed reads the books, matches and cases too, and screens them alike.
                (st.book("cataract"), "capacity"), (st.matches, "capacity"), (st.cases, "capacity")}
    rows = set()
    for stream, envelope in forged.items():
        for row in await _refusals(database, envelope.event_id):
            assert (row.field, row.rule) == ("producer", RULE_PRODUCER_IS_CHANNEL)
            rows.add((row.stream, stream))
    assert {(s, s) for s, _ in expected} == rows
    logged = {(line.get("stream"), line.get("worker")) for line in logs
              if line["event"] == "event.rejected" and line.get("rule") == RULE_PRODUCER_IS_CHANNEL}
    assert logged == expected
    # Never applied, never signed, never on a timeline; the chain is whole.
    async with database.session() as session:
        assert (await session.get(ClearingRoundRow, "rnd-frgd")) is None
        assert len(await load_timeline(session, REF)) == timeline_before
        assert len((await session.exec(select(SecureMessageRow))).all()) == messages_before
        assert len((await session.exec(select(MessageReceiptRow))).all()) == receipts_before
        forged_ids = [str(e.event_id) for e in forged.values()]
        assert not (await session.exec(select(CaseEventRow).where(col(CaseEventRow.event_id).in_(forged_ids)))).all()
        assert not (await session.exec(select(CaseAnnotationRow).where(
            col(CaseAnnotationRow.event_id).in_(forged_ids)))).all()
    assert (await _case(database)).state == "match_proposed"
    # The forged entries hold nothing up: the provider accepts, and the timeline verifies.
    await _send(parties, runtime, "01", _command("accept_match", "01", match_id=case.current_match_id))
    await settle(runtime)
    assert (await _case(database)).state == "provider_accepted"
    async with database.session() as session:
        entries = await load_events(session, REF)
    assert verify(entries).ok
