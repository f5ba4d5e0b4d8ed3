"""The transactional outbox: stage events with the state that caused them; a relay publishes them.

The relay publishes in id order with pipelined XADDs and marks rows published afterwards: a crash
between the two republishes (at least once), which the consumers' inbox turns into one effect.
Entries are written as FastStream reads them (`__data__` holds the envelope JSON), so any client
that can XADD can publish to the marketplace the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from events.envelope import DATA_FIELD as DATA_FIELD
from events.envelope import Envelope
from marketplace.adapters.appends import append
from marketplace.adapters.database import Database
from marketplace.adapters.orm import OutboxRow

log = structlog.get_logger(__name__)

OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]


def stage(session: AsyncSession, envelope: Envelope, stream: str) -> None:
    append(session, OUTBOX, {"event_id": str(envelope.event_id), "stream": stream, "producer": envelope.producer,
                             "body": envelope.to_json(), "created_at": datetime.now(UTC), "published_at": None})


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

    async def flush(self) -> int:
        """Publish everything staged so far; returns how many entries went out."""
        total = 0
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
