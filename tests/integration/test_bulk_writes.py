"""The hot path's bulk writes, on the real databases: what a batch appends is written with its
transaction or not at all, a batch that repeats an id keeps the first, and continuous clearing
says "not placed" once per reason, not once per round."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, func, select

from events import (
    CaseCommandIssued,
    ClearingRoundRequested,
    OfferPublished,
    OfferWithdrawn,
    Patient,
    RequestPublished,
    RequestWithdrawn,
    Streams,
    new_envelope,
)
from marketplace.adapters.appends import append
from marketplace.adapters.orm import CaseEventRow, CaseRow, MatchRow, OfferRow, OutboxRow, PlacementRow, RejectionRow
from marketplace.adapters.outbox import OUTBOX, stage
from marketplace.services import clearing, intake
from marketplace.services.context import ServiceContext

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START, END = date(2026, 3, 9), date(2026, 4, 30)


def _ctx() -> ServiceContext:
    return ServiceContext(streams=Streams("bulk"), clock=lambda: NOW)


def _offer(offer_id: str, region: str = "13", price: float = 9000) -> str:
    return new_envelope(OfferPublished(offer_id=offer_id, region=region, unit_hsa_id=f"SE23210000{region}-U",
                                       care_area="cataract", capacity=2, window_start=START, window_end=END,
                                       price_sek=price), producer=region).to_json()


def _request(request_id: str, *refs: str, region: str = "01", max_price: float | None = None) -> str:
    patients = tuple(Patient(case_ref=ref, waiting_since=date(2026, 1, 5)) for ref in refs)
    return new_envelope(RequestPublished(request_id=request_id, region=region, care_area="cataract",
                                         window_start=START, window_end=END, max_price_sek=max_price,
                                         patients=patients), producer=region).to_json()


async def _count(database, model, *where) -> int:
    async with database.session() as session:
        return (await session.exec(select(func.count()).select_from(model).where(*where))).one()


async def test_appended_rows_commit_with_their_transaction_or_not_at_all(database):
    envelope = new_envelope(OfferPublished(offer_id="off-1", region="13", unit_hsa_id="SE2321000016-U",
                                           care_area="cataract", capacity=1, window_start=START, window_end=END,
                                           price_sek=1),
                            producer="13")
    async with database.session() as session:
        stage(session, envelope, "s")
        # A query in the same transaction sees the staged row, as it would a pending ORM object.
        seen = (await session.exec(select(OutboxRow.event_id))).all()
        assert seen == [str(envelope.event_id)]
        await session.rollback()
    assert await _count(database, OutboxRow) == 0

    async with database.session() as session:
        append(session, OUTBOX, {"event_id": "e-2", "stream": "s", "body": "{}", "created_at": NOW,
                                 "published_at": None})
        with session.no_autoflush:
            assert (await session.exec(select(OutboxRow.event_id))).all() == []  # not written yet
        await session.commit()
    assert await _count(database, OutboxRow) == 1


async def test_a_batch_that_repeats_an_id_keeps_the_first_and_names_the_second(database):
    batch = [_offer("off-1"), _offer("off-1", price=1), _request("req-1", "case-1"), _request("req-1", "case-9"),
             _request("req-2", "case-2", "case-1")]
    async with database.session() as session:
        result = await intake.handle_batch(session, batch, _ctx())
        await session.commit()
    assert (result.accepted, result.rejected) == (2, 3)
    async with database.session() as session:
        offers = (await session.exec(select(OfferRow))).all()
        rejections = (await session.exec(select(RejectionRow.field, RejectionRow.rule)
                                          .order_by(col(RejectionRow.id)))).all()
        timeline = (await session.exec(select(CaseEventRow.case_ref).distinct())).all()
    assert [(o.offer_id, o.price_sek) for o in offers] == [("off-1", 9000)]
    assert rejections == [("payload.offer_id", "unique_id"), ("payload.request_id", "unique_id"),
                          ("payload.patients.1.case_ref", "unique_case_ref")]
    assert sorted(timeline) == ["case-1"]  # nothing of a refused request was written


async def test_a_case_opened_and_withdrawn_in_one_batch_ends_withdrawn(database):
    # The withdrawal reads the case back mid-batch: the new case's bulk-inserted row is written
    # first, and the withdrawal then changes that row, not a second copy of it.
    withdraw = new_envelope(RequestWithdrawn(request_id="req-1", region="01"), producer="01").to_json()
    async with database.session() as session:
        result = await intake.handle_batch(session, [_request("req-1", "case-1", "case-2"), withdraw], _ctx())
        await session.commit()
    assert (result.accepted, result.rejected) == (2, 0)
    async with database.session() as session:
        cases = (await session.exec(select(CaseRow).order_by(col(CaseRow.case_ref)))).all()
        versions = (await session.exec(select(CaseEventRow.version).where(col(CaseEventRow.case_ref) == "case-1")
                                       .order_by(col(CaseEventRow.version)))).all()
    assert [(c.case_ref, c.state, c.version) for c in cases] == [("case-1", "withdrawn", 3), ("case-2", "withdrawn", 3)]
    assert versions == [1, 2, 3]


async def test_continuous_clearing_reports_a_patient_not_placed_once_per_reason(database):
    ctx = _ctx()
    # The only offer costs more than the request will pay: no feasible offer, round after round.
    async with database.session() as session:
        await intake.handle_batch(session, [_offer("off-dr", price=20000),
                                            _request("req-1", "case-1", max_price=10000)], ctx)
        await session.commit()

    async def round_(n: int, *, continuous: bool) -> None:
        cmd = ClearingRoundRequested(round_id=f"rnd-{n}", care_area="cataract", as_of=START - timedelta(days=7))
        async with database.session() as session:
            await clearing.run_round(session, new_envelope(cmd, producer="matcher"), cmd, ctx, continuous=continuous)
            await session.commit()

    for n in range(3):
        await round_(n, continuous=True)
    async with database.session() as session:
        bodies = (await session.exec(select(OutboxRow.body).where(col(OutboxRow.stream) == ctx.streams.matches))).all()
    not_placed = [json.loads(b) for b in bodies if json.loads(b)["type"] == "patient.not_placed"]
    assert [e["payload"]["round_id"] for e in not_placed] == ["rnd-0"]
    assert not_placed[0]["payload"]["reason"] == "no_feasible_offer"
    assert await _count(database, PlacementRow) == 1

    # A round asked for explicitly records every patient's outcome again.
    await round_(3, continuous=False)
    assert await _count(database, PlacementRow, col(PlacementRow.round_id) == "rnd-3") == 1


async def test_a_clearing_round_costs_the_same_statements_for_a_small_book_as_for_a_large_one(database):
    """Read once, decide, write once: a round's statements do not grow with its offers or cases."""
    ctx = _ctx()
    books = {"cataract": 2, "knee-replacement": 12}
    batch = []
    for area, size in books.items():
        tag = "ctr" if area == "cataract" else "knr"  # the bus's ids have no vowels
        for i in range(size):
            batch.append(new_envelope(OfferPublished(
                offer_id=f"off-{tag}-{i}", region="13", unit_hsa_id="SE2321000013-U", care_area=area,
                capacity=1 + i % 2, window_start=START, window_end=END, price_sek=9000 + i), producer="13").to_json())
            batch.append(new_envelope(RequestPublished(
                request_id=f"req-{tag}-{i}", region="01", care_area=area, window_start=START, window_end=END,
                patients=tuple(Patient(case_ref=f"case-{tag}-{i}-{k}", waiting_since=date(2026, 1, 5 + k))
                               for k in range(3))), producer="01").to_json())
    async with database.session() as session:
        await intake.handle_batch(session, batch, ctx)
        await session.commit()

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    rounds = {}
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for n, area in enumerate(books):
            statements.clear()
            cmd = ClearingRoundRequested(round_id=f"rnd-{n}", care_area=area, as_of=START - timedelta(days=7))
            async with database.session() as session:
                summary = await clearing.run_round(session, new_envelope(cmd, producer="matcher"), cmd, ctx)
                await session.commit()
            assert summary is not None
            rounds[area] = (summary.placed, len(statements))
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    (small_placed, small), (large_placed, large) = rounds["cataract"], rounds["knee-replacement"]
    assert (small_placed, large_placed) == (3, 18)  # every slot of every offer taken
    assert small == large


async def test_an_intake_batch_reads_what_its_items_need_once_whatever_their_number(database):
    """Withdrawals, case commands and agreement changes read their rows with the batch, one query
    per table: a batch of eight of each reads no more than a batch of two."""
    ctx = _ctx()
    sizes = {"tw": 2, "ght": 8}  # the bus's ids have no vowels
    setup = []
    for tag, n in sizes.items():
        for i in range(n):
            setup.append(_offer(f"off-{tag}-{i}"))
            setup.append(_request(f"req-{tag}-{i}", f"case-{tag}-{i}-b"))
            setup.append(_request(f"req-{tag}-cmd-{i}", f"case-{tag}-cmd-{i}"))
    async with database.session() as session:
        await intake.handle_batch(session, setup, ctx)
        await session.commit()

    def batch(tag: str, n: int) -> list[str]:
        items = []
        for i in range(n):
            items.append(new_envelope(OfferWithdrawn(offer_id=f"off-{tag}-{i}", region="13"), producer="13").to_json())
            items.append(new_envelope(RequestWithdrawn(request_id=f"req-{tag}-{i}", region="01"),
                                      producer="01").to_json())
            items.append(new_envelope(CaseCommandIssued(case_ref=f"case-{tag}-cmd-{i}", command="withdraw",
                                                        args={"reason": "care_no_longer_needed"}),
                                      producer="01").to_json())
        return items

    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    reads = {}
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for tag, n in sizes.items():
            selects.clear()
            async with database.session() as session:
                result = await intake.handle_batch(session, batch(tag, n), ctx)
                await session.commit()
            assert (result.accepted, result.rejected) == (3 * n, 0)
            reads[tag] = len(selects)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert reads["tw"] == reads["ght"]
    async with database.session() as session:
        states = dict((await session.exec(select(CaseRow.case_ref, CaseRow.state).where(
            col(CaseRow.case_ref).like("case-ght-%")))).all())
        offers = set((await session.exec(select(OfferRow.status).where(
            col(OfferRow.offer_id).like("off-ght-%")))).all())
    assert set(states.values()) == {"withdrawn"} and len(states) == 16
    assert offers == {"withdrawn"}


async def test_a_batch_of_answers_settles_the_book_in_the_same_statements_whatever_their_number(database):
    """Holds declined in one batch give their slots back and close their matches in one statement
    each, not one per answer: eight declines cost what two cost, and every slot is back."""
    ctx = _ctx()
    sizes = {"tw": 2, "ght": 8}  # the bus's ids have no vowels
    setup = []
    for tag, n in sizes.items():
        setup.append(new_envelope(OfferPublished(offer_id=f"off-{tag}", region="13", unit_hsa_id="SE2321000013-U",
                                                care_area="cataract", capacity=n, window_start=START,
                                                window_end=END, price_sek=9000), producer="13").to_json())
        setup.append(_request(f"req-{tag}", *(f"case-{tag}-{i}" for i in range(n))))
    async with database.session() as session:
        await intake.handle_batch(session, setup, ctx)
        await session.commit()
    cmd = ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=START - timedelta(days=7))
    async with database.session() as session:
        await clearing.run_round(session, new_envelope(cmd, producer="matcher"), cmd, ctx)
        await session.commit()
    async with database.session() as session:
        held = dict((await session.exec(select(CaseRow.case_ref, CaseRow.current_match_id))).all())
    assert all(held.values()) and len(held) == 10

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    spent = {}
    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        for tag, n in sizes.items():
            statements.clear()
            batch = [new_envelope(CaseCommandIssued(case_ref=f"case-{tag}-{i}", command="decline_match",
                                                    args={"match_id": held[f"case-{tag}-{i}"],
                                                          "reason_code": "no_capacity"}), producer="13").to_json()
                     for i in range(n)]
            async with database.session() as session:
                result = await intake.handle_batch(session, batch, ctx)
                await session.commit()
            assert (result.accepted, result.rejected) == (n, 0)
            spent[tag] = len(statements)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
    assert spent["tw"] == spent["ght"]
    async with database.session() as session:
        remaining = dict((await session.exec(select(OfferRow.offer_id, OfferRow.remaining))).all())
        statuses = set((await session.exec(select(MatchRow.status))).all())
    assert remaining == {"off-tw": 2, "off-ght": 8}
    assert statuses == {"declined"}


async def test_several_parties_batches_in_one_pass_tell_each_refusal_to_its_own_channel(database):
    """Intake's shared transaction (workers/shared_transactions.py) hands it the batches of several
    ingress streams at once: one read per table for all, and each refusal goes to the channel its
    entry came on, never to another party's."""
    streams = _ctx().streams
    skane, stockholm = ServiceContext(streams=streams, clock=lambda: NOW, channel="12"), \
        ServiceContext(streams=streams, clock=lambda: NOW, channel="01")
    parts = [([_offer("off-1", region="12"), "{not json"], skane),
             ([_request("req-1", "case-1"), _request("req-1", "case-2")], stockholm)]
    async with database.session() as session:
        result = await intake.handle_parts(session, parts)
        await session.commit()
    assert (result.accepted, result.rejected) == (2, 2)
    async with database.session() as session:
        told = sorted((await session.exec(select(OutboxRow.stream).where(
            col(OutboxRow.stream).in_([streams.outgoing("12"), streams.outgoing("01")])))).all())
        offers = (await session.exec(select(OfferRow.offer_id))).all()
        cases = (await session.exec(select(CaseRow.case_ref))).all()
    assert told == sorted([streams.outgoing("12"), streams.outgoing("01")])
    assert (offers, cases) == (["off-1"], ["case-1"])
