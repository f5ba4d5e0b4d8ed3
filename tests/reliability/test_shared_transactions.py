"""Batches waiting for their group's turn run in one transaction; a failing one costs only itself.

On the real database (SQLite and PostgreSQL): each batch appends an inbox row (the bulk-append
path, written at the commit or between batches) and reads what the batches before it wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters import appends
from marketplace.adapters.database import Database
from marketplace.adapters.orm import ProcessedEventRow
from workers.failures import is_transient
from workers.shared_transactions import Part, SharedTransactions, TransactionAbandoned

pytestmark = pytest.mark.integration

INBOX = ProcessedEventRow.__table__  # type: ignore[attr-defined]
Work = Callable[[AsyncSession], Awaitable[None]]


def _inbox_row(event_id: str) -> dict[str, object]:
    return {"consumer": "shared-test", "event_id": event_id, "digest": None}


async def _ids(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set((await conn.execute(select(INBOX.c.event_id))).scalars().all())


class Recorder:
    """Works that append their id and note the transaction (session) they ran in and what they saw."""

    def __init__(self) -> None:
        self.sessions: dict[str, int] = {}
        self.seen_before: dict[str, int] = {}
        self.first_started = asyncio.Event()
        self.release_first = asyncio.Event()

    def work(self, event_id: str, *, hold: bool = False, fail: Exception | None = None) -> Work:
        async def run(session: AsyncSession) -> None:
            self.sessions[event_id] = id(session)
            connection = await session.connection()
            counted = await connection.execute(select(func.count()).select_from(INBOX))
            self.seen_before[event_id] = counted.scalar_one()
            appends.append(session, INBOX, _inbox_row(event_id))
            if hold:
                self.first_started.set()
                await self.release_first.wait()
            if fail is not None:
                raise fail
        return run


async def _three_waiting_behind_a_first(shared: SharedTransactions, rec: Recorder,
                                        works: dict[str, Work]) -> dict[str, BaseException | None]:
    """`first` holds its transaction open until the others have queued behind it; each one's outcome."""
    first = asyncio.create_task(shared.run(rec.work("first", hold=True)))
    await rec.first_started.wait()
    others = {name: asyncio.create_task(shared.run(work)) for name, work in works.items()}
    await asyncio.sleep(0)  # the others reach the queue (each appends itself before waiting)
    assert len(shared._waiting) == len(works)
    rec.release_first.set()
    outcomes = await asyncio.gather(first, *others.values(), return_exceptions=True)
    return dict(zip(["first", *others], [o if isinstance(o, BaseException) else None for o in outcomes],
                    strict=True))


async def test_batches_waiting_behind_one_go_together_in_one_transaction(database: Database) -> None:
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    outcomes = await _three_waiting_behind_a_first(shared, rec, {n: rec.work(n) for n in ("a", "b", "c")})

    assert outcomes == {"first": None, "a": None, "b": None, "c": None}
    assert await _ids(database) == {"first", "a", "b", "c"}
    # The first ran alone; the three behind it in one transaction, each reading what the one before wrote.
    assert rec.sessions["a"] == rec.sessions["b"] == rec.sessions["c"] != rec.sessions["first"]
    assert [rec.seen_before[n] for n in ("a", "b", "c")] == [1, 2, 3]


async def test_a_failing_batch_gets_its_own_error_and_the_others_commit(database: Database) -> None:
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    poison = ValueError("cannot process this batch")
    outcomes = await _three_waiting_behind_a_first(
        shared, rec, {"a": rec.work("a"), "bad": rec.work("bad", fail=poison), "c": rec.work("c")})

    assert outcomes["bad"] is poison
    assert outcomes == {"first": None, "a": None, "bad": poison, "c": None}
    # Nothing of the failed one is written; the others are, each run again on its own.
    assert await _ids(database) == {"first", "a", "c"}
    assert rec.sessions["a"] != rec.sessions["c"]


async def test_an_outage_is_handed_to_every_batch_without_running_them_one_by_one(database: Database) -> None:
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    outage = OperationalError("SELECT 1", {}, ConnectionRefusedError("the database went away"))
    tries: list[str] = []

    def counted(name: str, fail: Exception | None = None) -> Work:
        inner = rec.work(name, fail=fail)

        async def run(session: AsyncSession) -> None:
            tries.append(name)
            await inner(session)
        return run

    outcomes = await _three_waiting_behind_a_first(
        shared, rec, {"a": counted("a"), "down": counted("down", fail=outage), "c": counted("c")})

    assert is_transient(outage)
    assert outcomes["first"] is None
    assert all(outcomes[n] is outage for n in ("a", "down", "c"))
    assert await _ids(database) == {"first"}
    # Tried together (twice: a lost race is tried again), never apart.
    assert tries == ["a", "down"] * 2


async def test_a_batch_stopped_while_waiting_is_run_by_nobody(database: Database) -> None:
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    first = asyncio.create_task(shared.run(rec.work("first", hold=True)))
    await rec.first_started.wait()
    stopped = asyncio.create_task(shared.run(rec.work("stopped")))
    kept = asyncio.create_task(shared.run(rec.work("kept")))
    await asyncio.sleep(0)
    stopped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopped
    rec.release_first.set()
    await asyncio.gather(first, kept)
    assert await _ids(database) == {"first", "kept"}


async def test_a_runner_stopped_mid_transaction_leaves_the_others_pending_as_an_outage(database: Database) -> None:
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    first = asyncio.create_task(shared.run(rec.work("first")))
    await first
    holder_started, never = asyncio.Event(), asyncio.Event()

    async def holding(session: AsyncSession) -> None:
        appends.append(session, INBOX, _inbox_row("runner"))
        holder_started.set()
        await never.wait()

    blocker = asyncio.create_task(shared.run(rec.work("blocker", hold=True)))
    await rec.first_started.wait()
    runner = asyncio.create_task(shared.run(holding))
    other = asyncio.create_task(shared.run(rec.work("other")))
    await asyncio.sleep(0)
    rec.release_first.set()
    await blocker
    await holder_started.wait()  # `runner` took itself and `other` into one transaction
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    with pytest.raises(TransactionAbandoned) as abandoned:
        await other
    assert is_transient(abandoned.value)  # left pending for the claimer, never counted against the entries
    assert await _ids(database) == {"first", "blocker"}


async def test_a_group_that_merges_gets_the_waiting_batches_in_one_call(database: Database) -> None:
    calls: list[list[Part]] = []

    async def merge(session: AsyncSession, parts: list[Part]) -> None:
        calls.append(parts)
        for part in parts:
            for body in part.bodies:
                appends.append(session, INBOX, _inbox_row(body))

    shared, rec = SharedTransactions(database, "intake", merge, most_entries=100), Recorder()
    first = asyncio.create_task(shared.run(rec.work("first", hold=True)))
    await rec.first_started.wait()
    parts = [Part("ingress:01", ["a1", "a2"]), Part("ingress:12", ["b1"])]
    others = [asyncio.create_task(shared.run(rec.work(f"unmerged-{n}"), part)) for n, part in enumerate(parts)]
    await asyncio.sleep(0)
    rec.release_first.set()
    await asyncio.gather(first, *others)

    assert calls == [parts]  # one call, both batches, in the order they came
    assert await _ids(database) == {"first", "a1", "a2", "b1"}


async def test_a_transaction_takes_the_waiting_batches_up_to_its_size(database: Database) -> None:
    """A flood is cut into transactions of about a consumer's batch, in the order the batches came."""
    shared, rec = SharedTransactions(database, "intake", most_entries=100), Recorder()
    first = asyncio.create_task(shared.run(rec.work("first", hold=True)))
    await rec.first_started.wait()
    sizes = {"sixty": 60, "fifty": 50, "thirty": 30, "two-hundred": 200}
    others = [asyncio.create_task(shared.run(rec.work(name), entries=n)) for name, n in sizes.items()]
    await asyncio.sleep(0)
    rec.release_first.set()
    await asyncio.gather(first, *others)

    assert await _ids(database) == {"first", *sizes}
    # 60 alone (60 + 50 > 100), then 50 + 30, then the one bigger than a transaction's size, alone.
    s = rec.sessions
    assert len({s["first"], s["sixty"], s["fifty"], s["two-hundred"]}) == 4
    assert s["fifty"] == s["thirty"]
