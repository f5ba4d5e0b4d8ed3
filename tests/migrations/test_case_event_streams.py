"""Revision 0002 on a database that holds timelines of the old shape: each case's lifecycle events
and the bus's entries about it in one chain. The upgrade splits them into the case's event stream
(versioned as the case is) and its annotations, each chain re-hashed with a fresh head and keyed
checkpoint; a tampered old timeline stops it (re-hashing must not launder the tampering); the
downgrade merges them back."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from marketplace.adapters import schema
from marketplace.adapters.checkpoint_key import load_or_create_key
from marketplace.adapters.database import Database
from marketplace.lifecycle import CaseStatus, Chain, event_payload, replay_timeline, verify_case
from marketplace.lifecycle.timeline import canonical_json
from marketplace.services.timeline import load_annotations, load_events, load_heads, load_timeline
from marketplace.settings import Settings
from tests.lifecycle.journey import CASE, reach

GENESIS = "0" * 64
OTHER = "case-0002"

_OLD = sa.table("timeline", sa.column("case_ref", sa.String), sa.column("version", sa.Integer),
                sa.column("event_id", sa.String), sa.column("event_type", sa.String),
                sa.column("occurred_at", sa.DateTime(timezone=True)), sa.column("payload", sa.JSON),
                sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
_OLD_HEADS = sa.table("timeline_heads", sa.column("case_ref", sa.String), sa.column("version", sa.Integer),
                      sa.column("hash", sa.String), sa.column("checkpoint", sa.String),
                      sa.column("updated_at", sa.DateTime(timezone=True)))


def _old_hash(prev: str, row: dict[str, Any]) -> str:
    """The old timeline's hash: no chain name in it."""
    content = {k: row[k] for k in ("case_ref", "version", "event_id", "event_type", "payload")}
    content.update(occurred_at=row["occurred_at"].astimezone(UTC).isoformat(), prev_hash=prev)
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def _old_timeline(case_ref: str, with_bus: bool) -> list[dict[str, Any]]:
    """A case's lifecycle events up to its referral, with messages sent about it in between (the old shape)."""
    rows: list[dict[str, Any]] = []
    prev = GENESIS
    for n, event in enumerate(reach(CaseStatus.REFERRED).history):
        items = [(str(event.event_id) if case_ref == CASE else str(uuid.uuid4()), event.TYPE, event.occurred_at,
                  json.loads(canonical_json(event_payload(event))))]
        if with_bus and n % 2:
            items.append((str(uuid.uuid4()), "message.sent", event.occurred_at + timedelta(seconds=1),
                          {"message_id": f"msg-{n}", "case_ref": case_ref, "message_type": "notice",
                           "sender": "marketplace", "recipient": "25", "recipient_address": ""}))
        for event_id, event_type, occurred_at, payload in items:
            row = {"case_ref": case_ref, "version": len(rows) + 1, "event_id": event_id, "event_type": event_type,
                   "occurred_at": occurred_at, "payload": payload}
            row["prev_hash"], row["hash"] = prev, _old_hash(prev, row)
            prev = row["hash"]
            rows.append(row)
    return rows


def _old_head(key: bytes, rows: list[dict[str, Any]]) -> dict[str, Any]:
    last = rows[-1]
    message = canonical_json({"case_ref": last["case_ref"], "version": last["version"], "hash": last["hash"]})
    return {"case_ref": last["case_ref"], "version": last["version"], "hash": last["hash"],
            "checkpoint": hmac.new(key, message.encode(), hashlib.sha256).hexdigest(),
            "updated_at": datetime.now(UTC)}


async def _at_0001_with_old_timelines(db: Database, settings: Settings,
                                      tamper: bool = False) -> dict[str, list[dict[str, Any]]]:
    await schema.upgrade(db, "0001")
    key = load_or_create_key(settings.state_dir)
    timelines = {CASE: _old_timeline(CASE, with_bus=True), OTHER: _old_timeline(OTHER, with_bus=False)}
    if tamper:
        timelines[OTHER][2]["payload"] = {**timelines[OTHER][2]["payload"], "note": "changed"}
    async with db.engine.begin() as conn:
        await conn.execute(_OLD.insert(), [row for rows in timelines.values() for row in rows])
        await conn.execute(_OLD_HEADS.insert(), [_old_head(key, rows) for rows in timelines.values()])
    return timelines


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_old_timelines_are_split_into_the_case_stream_and_its_annotations(settings: Settings,
                                                                                 empty_db: Database) -> None:
    old = await _at_0001_with_old_timelines(empty_db, settings)
    done = await schema.upgrade(empty_db)
    assert (done.before, done.after) == ("0001", schema.head())
    assert await schema.differences(empty_db) == []
    tables = await _tables(empty_db)
    assert {"case_events", "case_annotations", "chain_heads"} <= tables
    assert not {"timeline", "timeline_heads"} & tables
    key = load_or_create_key(settings.state_dir)
    async with empty_db.session() as session:
        for ref, rows in old.items():
            events, annotations = await load_events(session, ref), await load_annotations(session, ref)
            heads = await load_heads(session, ref)
            # Every old entry kept once, in its order, in the right chain.
            assert [str(e.event_id) for e in events] == [r["event_id"] for r in rows
                                                          if r["event_type"] != "message.sent"]
            assert [str(a.event_id) for a in annotations] == [r["event_id"] for r in rows
                                                               if r["event_type"] == "message.sent"]
            # The stream's version is the case's version; each chain verifies against its new head.
            case = replay_timeline(events)
            assert [e.version for e in events] == list(range(1, case.version + 1))
            assert [a.version for a in annotations] == list(range(1, len(annotations) + 1))
            checked = verify_case(ref, await load_timeline(session, ref), heads, key)
            assert checked.ok, checked.results
            assert set(heads) == ({Chain.EVENTS, Chain.ANNOTATIONS} if annotations else {Chain.EVENTS})
    assert len(old[CASE]) > len(old[OTHER])  # the first case did have bus entries between its events


async def test_a_tampered_old_timeline_stops_the_upgrade_naming_the_case(settings: Settings,
                                                                          empty_db: Database) -> None:
    await _at_0001_with_old_timelines(empty_db, settings, tamper=True)
    with pytest.raises(RuntimeError, match=f"1 case timeline.*{OTHER}.*re-hash"):
        await schema.upgrade(empty_db)
    # Nothing half-done: the schema is still at 0001 with its old tables.
    assert await schema.current(empty_db) == "0001"
    assert {"timeline", "timeline_heads"} <= await _tables(empty_db)
    assert not {"case_events", "chain_heads"} & await _tables(empty_db)


async def test_downgrading_merges_the_chains_back_into_one_timeline(settings: Settings, empty_db: Database) -> None:
    old = await _at_0001_with_old_timelines(empty_db, settings)
    await schema.upgrade(empty_db)
    assert await schema.downgrade(empty_db, "0001") == "0001"
    async with empty_db.engine.connect() as conn:
        rows = (await conn.execute(sa.select(_OLD).order_by(_OLD.c.case_ref, _OLD.c.version))).mappings().all()
        heads = {h["case_ref"]: h for h in (await conn.execute(sa.select(_OLD_HEADS))).mappings()}
    for ref, before in old.items():
        after = [dict(r) for r in rows if r["case_ref"] == ref]
        assert [(r["version"], r["event_id"], r["hash"]) for r in after] == [
            (r["version"], r["event_id"], r["hash"]) for r in before]
        assert (heads[ref]["version"], heads[ref]["hash"]) == (before[-1]["version"], before[-1]["hash"])
    # And up again: the same split.
    await schema.upgrade(empty_db)
    async with empty_db.session() as session:
        assert verify_case(CASE, await load_timeline(session, CASE), await load_heads(session, CASE),
                           load_or_create_key(settings.state_dir)).ok
