"""One deadline sweeper per deployment: any worker process may host it, the one holding the lock does.

APScheduler 3.x runs the sweep on an interval; a Redis lock (the partitions' `FencedLock`, renewed
by its holder) decides which process that is. Job stores stay in memory:
3.x cannot share one between processes, and the deadlines themselves live in the database.
"""

from __future__ import annotations

import uuid

import structlog

from marketplace.adapters.locks import FencedLock
from marketplace.adapters.periodic import Periodic
from marketplace.services.deadlines import sweep
from marketplace.services.notification import pump
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

class DeadlineSweeper:
    def __init__(self, runtime: Runtime, *, interval_s: float = 5.0, lock_ttl_ms: int = 30_000) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.lock_ttl_ms = lock_ttl_ms
        self.holder = f"{runtime.settings.consumer_name}:{uuid.uuid4().hex[:8]}"
        self._lock: FencedLock | None = None
        self._periodic: Periodic | None = None

    @property
    def lock(self) -> FencedLock:
        # Made once connected: the lock needs the broker's Redis client.
        if self._lock is None:
            self._lock = FencedLock.for_partition(self.runtime.redis, self.runtime.streams.prefix, "deadline-sweeper",
                                                  self.holder, self.lock_ttl_ms)
        return self._lock

    async def holds_lock(self) -> bool:
        # The sweep's writes are idempotent (stable command ids), so the token fences nothing here:
        # the lock only keeps the sweeps of several processes from repeating each other's work.
        if await self.lock.renew():
            return True
        if await self.lock.acquire() is not None:
            log.info("sweeper.lock_acquired", holder=self.holder, token=self.lock.token)
            return True
        return False

    async def tick(self) -> int:
        """One sweep, if this process holds the lock; returns the commands published."""
        if not await self.holds_lock():
            return 0
        async with self.runtime.db.session() as session:
            count = await sweep(session, self.runtime.context)
            # Messages are retried and overdue receipts escalated even when no new event arrives.
            await pump(session, self.runtime.context, self.runtime.settings.state_dir)
            await session.commit()
        if count:
            await self.runtime.relay.flush()
        return count

    def start(self) -> None:
        self._periodic = Periodic("deadline-sweep", self.interval_s, self.tick)
        self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None
        try:
            await self.lock.release()
        except Exception:
            log.warning("sweeper.release_failed")
