"""`nvf timeline --verify` against the three tamperings the hash chain alone cannot see: the newest
entry deleted, the chain recomputed after an edit (head rewritten too), an entry appended with a
valid hash. Each is reported in one readable line naming the chain it is in (the case's event
stream or its annotations); an untouched timeline passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlmodel import col, delete, select

from events import ClearingRoundRequested, OfferPublished, RequestPublished, new_envelope
from events.bounds import today
from events.identifiers import new_event_id
from events.payloads import MessageSent
from marketplace.adapters.checkpoint_key import load_key
from marketplace.adapters.orm import CaseAnnotationRow, CaseEventRow, CaseRow, ChainHeadRow
from marketplace.entrypoints.timeline_view import show_timeline
from marketplace.lifecycle.timeline import GENESIS_HASH, Chain, chain_hash, new_entry
from marketplace.services.timeline import append_events, load_events
from tests.integration.harness import marketplace, publish_events, settle

pytestmark = pytest.mark.integration

START = today() + timedelta(days=7)
CASES = ["case-1", "case-2", "case-3", "case-4"]


async def _verify(settings: Any, case_ref: str) -> tuple[int, list[str]]:
    console = Console(record=True, width=100, color_system=None)
    code = await show_timeline(settings, case_ref, console=console, check=True)
    return code, console.export_text().splitlines()


def _line(lines: list[str], chain: str) -> str:
    """The verdict on one chain: 'event stream' or 'annotations'."""
    found = [ln for ln in lines if ("hash chain intact" in ln or "BROKEN" in ln) and f"({chain})" in ln]
    assert len(found) == 1, lines
    return found[0]


async def _rows(database: Any, case_ref: str) -> list[CaseEventRow]:
    async with database.session() as session:
        return list((await session.exec(select(CaseEventRow).where(CaseEventRow.case_ref == case_ref)
                                        .order_by(col(CaseEventRow.version)))).all())


def _sent(case_ref: str) -> tuple[Any, MessageSent]:
    sent = MessageSent(message_id=f"msg-{case_ref}", case_ref=case_ref, message_type="referral", sender="25",
                       recipient="13")
    return new_envelope(sent, producer="notifier"), sent


async def _annotate(settings: Any, database: Any, event: tuple[Any, MessageSent]) -> None:
    """What the timeline worker makes of a bus event about the case."""
    async with database.session() as session:
        await append_events(session, [event], key=load_key(settings.state_dir))
        await session.commit()


@pytest.fixture
async def cases(settings, database, redis_client) -> list[str]:
    offer = OfferPublished(
        offer_id="off-1", region="13", unit_hsa_id="SE2321000115-KT1", care_area="cataract", capacity=4,
        window_start=START, window_end=START + timedelta(days=60), price_sek=9000)
    request = RequestPublished.model_validate({
        "request_id": "req-1", "region": "25", "care_area": "cataract", "window_start": START.isoformat(),
        "window_end": (START + timedelta(days=60)).isoformat(),
        "patients": [{"case_ref": ref, "waiting_since": "2026-06-01"} for ref in CASES]})
    clearing = ClearingRoundRequested(round_id="rnd-1", care_area="cataract", as_of=START)
    async with marketplace(settings, database) as runtime:
        # The operator asks for the round once intake has what the regions sent (their streams are apart).
        await publish_events(runtime.redis, runtime.streams,
                             [new_envelope(offer, producer="13"), new_envelope(request, producer="25")])
        await settle(runtime)
        await publish_events(runtime.redis, runtime.streams, [new_envelope(clearing, producer="operator")])
        await settle(runtime, ["rnd-1"])
    return CASES


async def test_an_untouched_timeline_verifies_against_its_head_and_checkpoint(settings, database, cases):
    code, lines = await _verify(settings, cases[0])
    assert code == 0, lines
    assert "checkpoint valid" in _line(lines, "event stream")
    assert "hash chain intact" in _line(lines, "annotations")
    async with database.session() as session:
        head = await session.get(ChainHeadRow, (cases[0], "events"))
    rows = await _rows(database, cases[0])
    assert head is not None and (head.version, head.hash) == (rows[-1].version, rows[-1].hash) and len(rows) >= 3


async def test_a_deleted_newest_entry_is_detected(settings, database, cases):
    rows = await _rows(database, cases[1])
    async with database.session() as session:
        await session.exec(delete(CaseEventRow).where(col(CaseEventRow.id) == rows[-1].id))
        await session.commit()
    code, lines = await _verify(settings, cases[1])
    assert code == 1
    line = _line(lines, "event stream")
    assert "BROKEN" in line and "head_mismatch" in line and "newest entries missing" in line
    assert "hash chain intact" in _line(lines, "annotations")


async def test_a_chain_recomputed_after_an_edit_is_detected_even_with_its_head_rewritten(settings, database, cases):
    ref = cases[2]
    rows = await _rows(database, ref)
    async with database.session() as session:
        prev = GENESIS_HASH
        for row in (await session.exec(select(CaseEventRow).where(CaseEventRow.case_ref == ref)
                                       .order_by(col(CaseEventRow.version)))).all():
            if row.version == 1:
                row.payload = {**row.payload, "waiting_since": "2020-01-01"}  # the edit
            occurred = row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)
            row.prev_hash = prev
            row.hash = chain_hash(prev, case_ref=ref, version=row.version, event_id=row.event_id,
                                  event_type=row.event_type, occurred_at=occurred, payload=row.payload)
            prev = row.hash
            session.add(row)
        head = await session.get(ChainHeadRow, (ref, "events"))
        assert head is not None
        head.hash = prev  # whoever can write the database can move the head too; not the checkpoint
        session.add(head)
        await session.commit()
    assert [r.hash for r in await _rows(database, ref)] != [r.hash for r in rows]
    code, lines = await _verify(settings, ref)
    assert code == 1
    line = _line(lines, "event stream")
    assert "BROKEN" in line and "checkpoint_mismatch" in line


async def test_a_forged_entry_appended_with_a_valid_hash_is_detected(settings, database, cases):
    ref = cases[3]
    async with database.session() as session:
        entries = await load_events(session, ref)
        forged = new_entry(entries, case_ref=ref, event_id=new_event_id(), event_type="case.closed",
                           occurred_at=datetime.now(UTC), payload={})
        session.add(CaseEventRow(case_ref=ref, version=forged.version, event_id=str(forged.event_id),
                                 event_type=forged.event_type, occurred_at=forged.occurred_at,
                                 payload=dict(forged.payload), prev_hash=forged.prev_hash, hash=forged.hash))
        await session.commit()
    code, lines = await _verify(settings, ref)
    assert code == 1
    line = _line(lines, "event stream")
    assert "BROKEN" in line and "head_mismatch" in line and "appended past the head" in line
    # The chain itself is intact: only the head kept outside it gives the forgery away.
    assert json.dumps(line).count("version") >= 2


async def test_an_edited_annotation_breaks_the_annotations_chain_not_the_event_stream(settings, database, cases):
    ref = cases[0]
    await _annotate(settings, database, _sent(ref))
    assert (await _verify(settings, ref))[0] == 0
    async with database.session() as session:
        note = (await session.exec(select(CaseAnnotationRow).where(CaseAnnotationRow.case_ref == ref)
                                   .order_by(col(CaseAnnotationRow.position)))).first()
        assert note is not None
        note.payload = {**note.payload, "recipient": "12"}
        session.add(note)
        await session.commit()
    code, lines = await _verify(settings, ref)
    assert code == 1
    line = _line(lines, "annotations")
    assert "BROKEN" in line and "hash_mismatch" in line and f"at version {note.position}" in line
    assert "hash chain intact" in _line(lines, "event stream")


async def test_an_annotation_never_moves_the_case_version(settings, database, cases):
    ref = cases[1]
    before = [e.version for e in await _events(database, ref)]
    async with database.session() as session:
        said = len((await session.exec(select(CaseAnnotationRow).where(CaseAnnotationRow.case_ref == ref))).all())
    sent = _sent(ref)
    await _annotate(settings, database, sent)
    await _annotate(settings, database, sent)  # the same bus event again: a redelivery adds nothing
    async with database.session() as session:
        notes = (await session.exec(select(CaseAnnotationRow).where(CaseAnnotationRow.case_ref == ref)
                                    .order_by(col(CaseAnnotationRow.position)))).all()
        head = await session.get(ChainHeadRow, (ref, str(Chain.ANNOTATIONS)))
        case = await session.get(CaseRow, ref)
    assert [e.version for e in await _events(database, ref)] == before == list(range(1, len(before) + 1))
    assert case is not None and case.version == before[-1]  # the stream's version is the case's
    assert [n.position for n in notes] == list(range(1, said + 2)) and head is not None and head.version == said + 1


async def _events(database: Any, ref: str) -> list[Any]:
    async with database.session() as session:
        return await load_events(session, ref)
