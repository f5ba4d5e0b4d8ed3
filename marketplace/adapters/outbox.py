"""The transactional outbox: stage events with the state that caused them; a relay publishes them.

The relay publishes in id order with pipelined XADDs and marks rows published afterwards: a crash
between the two republishes (at least once), which the consumers' inbox turns into one effect.
Entries are written as FastStream reads them (`__data__` holds the envelope JSON), so any client
that can XADD can publish to the marketplace the same way.

What a transaction of this process staged is published from memory once it commits
(`OutboxRelay.publish_committed`, after each batch): its rows' ids come back from their insert,
and the relay claims those still unpublished (an UPDATE that marks them, whose row locks keep any
other relay off them), XADDs the bodies it holds and commits; no read of the table, and nothing at
all for a transaction that staged nothing. Each envelope is serialised once, when staged. What is
left (a process that stopped between commit and publish, a Redis outage) the relay's own loop
finds in the table as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from sqlalchemy import event, update
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from events.envelope import DATA_FIELD as DATA_FIELD
from events.envelope import Envelope
from marketplace.adapters.appends import append, on_inserted
from marketplace.adapters.database import Database
from marketplace.adapters.orm import OutboxRow

log = structlog.get_logger(__name__)

OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_WRITTEN = "nvf.outbox.written"
# Past this many of one producer, committed entries wait for the relay's loop instead (one that no
# relay of this process publishes must not pile up in memory).
_HELD = 10_000


class Staged(NamedTuple):
    id: int
    stream: str
    producer: str
    body: str


# Per engine and producer, what this process committed and has not published yet, in commit order.
_committed: weakref.WeakKeyDictionary[Any, dict[str, deque[Staged]]] = weakref.WeakKeyDictionary()


def stage(session: AsyncSession, envelope: Envelope, stream: str) -> None:
    append(session, OUTBOX, {"event_id": str(envelope.event_id), "stream": stream, "producer": envelope.producer,
                             "body": envelope.to_json(), "created_at": datetime.now(UTC), "published_at": None})


def _inserted(session: Session, rows: list[dict[str, Any]], returned: list[Any]) -> None:
    ids: dict[tuple[str, str], list[int]] = {}
    for row_id, event_id, stream in sorted(returned):
        ids.setdefault((event_id, stream), []).append(int(row_id))
    written: list[Staged] = session.info.setdefault(_WRITTEN, [])
    for r in rows:
        taken = ids.get((r.get("event_id"), r.get("stream")))  # type: ignore[arg-type]
        row_id = taken.pop(0) if taken else None
        # A row appended without `stage` (and so without all of these) is left to the relay's loop.
        if row_id is not None and r.get("producer") is not None and r.get("body") is not None:
            written.append(Staged(row_id, r["stream"], r["producer"], r["body"]))


on_inserted(OUTBOX, (OUTBOX.c.id, OUTBOX.c.event_id, OUTBOX.c.stream), _inserted)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    written: list[Staged] | None = session.info.pop(_WRITTEN, None)
    bind = session.bind
    if not written or bind is None:
        return
    queues = _committed.setdefault(getattr(bind, "engine", bind), {})
    for staged in written:
        queue = queues.setdefault(staged.producer, deque())
        if len(queue) < _HELD:
            queue.append(staged)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WRITTEN, None)  # rolled back: nothing of it is published


class OutboxRelay:
    def __init__(self, db: Database, redis: Any, *, batch: int = 1000, stream_maxlen: int | None = None,
                 producers: frozenset[str] | None = None) -> None:
        self.db = db
        self.redis = redis
        # Connected as one role's Redis user, a relay publishes only what that role staged (None: all).
        self.producers = producers
        self.batch = batch
        self.stream_maxlen = stream_maxlen
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """Tell the background loop there is something to publish."""
        self._wake.set()

    def _take_committed(self) -> list[Staged]:
        queues = _committed.get(self.db.engine.sync_engine)
        if not queues:
            return []
        # Connected as one role's user, a relay takes only what that role staged.
        taken: list[Staged] = []
        for producer, queue in queues.items():
            if self.producers is None or producer in self.producers:
                taken += queue
                queue.clear()
        # Ids follow commit order within a process's relay lock; several producers' entries
        # interleave as they were committed.
        taken.sort(key=lambda s: s.id)
        return taken

    async def publish_committed(self) -> int:
        """Publish what this process committed since, from memory; returns how many entries went
        out. If that fails the rows stay unpublished, for the loop (`poke`) or the next `flush`."""
        async with self._lock:
            staged = self._take_committed()
            if not staged:
                return 0
            async with self.db.session() as session:
                # The claim: only rows nobody published yet, locked until this commits (another
                # relay's `FOR UPDATE SKIP LOCKED` passes them by).
                claimed: set[int] = set((await session.exec(
                    update(OUTBOX).where(OUTBOX.c.id.in_([s.id for s in staged]), OUTBOX.c.published_at.is_(None))
                    .values(published_at=datetime.now(UTC)).returning(OUTBOX.c.id))).scalars())
                if claimed:
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for s in staged:
                            if s.id in claimed:
                                pipe.xadd(s.stream, {DATA_FIELD: s.body}, maxlen=self.stream_maxlen, approximate=True)
                        await pipe.execute()
                await session.commit()
            log.debug("outbox.published", count=len(claimed))
            return len(claimed)

    async def flush(self) -> int:
        """Publish everything staged so far; returns how many entries went out."""
        total = await self.publish_committed()
        async with self._lock:
            while True:
                async with self.db.session() as session:
                    # Plain rows, not ORM objects: a flush after a busy batch reads a thousand of them.
                    query = select(OUTBOX.c.id, OUTBOX.c.stream, OUTBOX.c.body).where(OUTBOX.c.published_at.is_(None))
                    if self.producers is not None:
                        query = query.where(OUTBOX.c.producer.in_(sorted(self.producers)))
                    query = query.order_by(OUTBOX.c.id).limit(self.batch)
                    if not self.db.is_sqlite:
                        # Several relays on PostgreSQL share the work; SQLite runs one relay.
                        query = query.with_for_update(skip_locked=True)
                    rows = list((await session.exec(query)).all())
                    if not rows:
                        await session.commit()
                        return total
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for _id, stream, body in rows:
                            pipe.xadd(stream, {DATA_FIELD: body}, maxlen=self.stream_maxlen, approximate=True)
                        await pipe.execute()
                    ids = [row_id for row_id, _, _ in rows]
                    await session.exec(
                        update(OUTBOX).where(OUTBOX.c.id.in_(ids)).values(published_at=datetime.now(UTC)))
                    await session.commit()
                    total += len(rows)
                    log.debug("outbox.published", count=len(rows))

    async def run(self, interval_s: float = 0.5) -> None:
        """Background loop: publish when poked, and at least every `interval_s` (crash leftovers)."""
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when it is
            # cancelled just as the event is set (CPython gh-86296), and this loop would then run on,
            # leaving whoever stops it waiting forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox.relay_failed")
                await asyncio.sleep(interval_s)
