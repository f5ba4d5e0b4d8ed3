"""What "every event had its effect exactly once" means, checked against the database."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import select

from events import Envelope
from marketplace.adapters.database import Database
from marketplace.adapters.orm import CaseEventRow, CaseRow, MatchRow, NotificationRow, OfferRow
from marketplace.entrypoints.progress import stream_backlog, unpublished
from marketplace.lifecycle.timeline import replay_timeline, verify
from marketplace.services.timeline import to_entry

ACTIVE = ("proposed", "accepted")


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str,
                     explain: Callable[[], Awaitable[Any]] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    state = f": {await explain()}" if explain is not None else ""
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}{state}")


async def describe(db: Database, redis: Any, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Where the market stands, for a failure message."""
    async with db.session() as session:
        states = Counter(s for s in (await session.exec(select(CaseRow.state))).all())
        matches = len((await session.exec(select(MatchRow.match_id))).all())
        notices = len((await session.exec(select(NotificationRow.message_id))).all())
    backlog = {f"{s} {g}": await stream_backlog(redis, [(s, g)]) for s, g in pairs}
    return {"cases": dict(states), "matches": matches, "notices": notices, "outbox": await unpublished(db),
            "backlog": {k: v for k, v in backlog.items() if v}}


def expected_cases(events: list[Envelope]) -> set[str]:
    return {p["case_ref"] for e in events if e.type == "request.published" for p in e.payload["patients"]}


def offered(events: list[Envelope]) -> dict[str, int]:
    return {e.payload["offer_id"]: e.payload["capacity"] for e in events if e.type == "offer.published"}


async def all_matched(db: Database, refs: set[str]) -> bool:
    async with db.session() as session:
        rows = (await session.exec(select(CaseRow.case_ref, CaseRow.state))).all()
    return len(rows) == len(refs) and all(state == "match_proposed" for _, state in rows)


async def settled(db: Database, redis: Any, pairs: list[tuple[str, str]], refs: set[str]) -> bool:
    """Every case matched, nothing pending on any stream, nothing left in the outbox."""
    if not await all_matched(db, refs):
        return False
    return await stream_backlog(redis, pairs) == 0 and await unpublished(db) == 0


async def assert_exactly_once(db: Database, events: list[Envelope]) -> None:
    refs, capacity = expected_cases(events), offered(events)
    async with db.session() as session:
        cases = {c.case_ref: c for c in (await session.exec(select(CaseRow))).all()}
        offers = {o.offer_id: o for o in (await session.exec(select(OfferRow))).all()}
        matches = (await session.exec(select(MatchRow))).all()
        timeline = (await session.exec(select(CaseEventRow))).all()
    # Nothing lost, nothing extra: every case once, every offer once.
    assert set(cases) == refs
    assert set(offers) == set(capacity)
    # One allocation per case, and a slot is never given twice: capacity is conserved exactly.
    per_case = Counter(m.case_ref for m in matches if m.status in ACTIVE)
    assert set(per_case) == refs and set(per_case.values()) == {1}, per_case.most_common(3)
    given = Counter(m.offer_id for m in matches if m.status in ACTIVE)
    for offer_id, cap in capacity.items():
        assert offers[offer_id].remaining == cap - given[offer_id] >= 0, (offer_id, offers[offer_id].remaining)
    assert all(cases[m.case_ref].current_match_id == m.match_id for m in matches if m.status in ACTIVE)
    # Each case's event stream: one chain, unbroken, versioned as the case is, replaying to the
    # stored state, matched once.
    history: dict[str, list[CaseEventRow]] = defaultdict(list)
    for row in sorted(timeline, key=lambda r: (r.case_ref, r.version)):
        history[row.case_ref].append(row)
    for ref in refs:
        entries = [to_entry(r) for r in history[ref]]
        assert [e.version for e in entries] == list(range(1, len(entries) + 1)), ref
        assert verify(entries).ok, ref
        assert replay_timeline(entries).status.value == cases[ref].state, ref
        assert entries[-1].version == cases[ref].version, ref
        assert sum(1 for e in entries if e.event_type == "case.match_held") == 1, ref
