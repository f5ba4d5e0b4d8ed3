"""One deadline sweeper per deployment: any worker process may host it, the one holding the lock does.

APScheduler 3.x runs the sweep on an interval; a Redis lock (`SET NX PX`, renewed by its holder
with a compare-and-extend script) decides which process that is. Job stores stay in memory:
3.x cannot share one between processes, and the deadlines themselves live in the database.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from marketplace.services.deadlines import sweep
from marketplace.services.notification import pump
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# Extend the lock only if we still hold it; a holder that stalled past its TTL must not steal it back.
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
          "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end")
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class DeadlineSweeper:
    def __init__(self, runtime: Runtime, *, interval_s: float = 5.0, lock_ttl_ms: int = 30_000) -> None:
        self.runtime = runtime
        self.interval_s = interval_s
        self.lock_ttl_ms = lock_ttl_ms
        self.token = f"{runtime.settings.consumer_name}:{uuid.uuid4().hex[:8]}"
        self.lock_key = f"{runtime.streams.prefix}:lock:deadline-sweeper"
        self._scheduler: AsyncIOScheduler | None = None

    async def holds_lock(self) -> bool:
        redis: Any = self.runtime.redis
        if await redis.set(self.lock_key, self.token, nx=True, px=self.lock_ttl_ms):
            log.info("sweeper.lock_acquired", token=self.token)
            return True
        return bool(await redis.eval(_RENEW, 1, self.lock_key, self.token, self.lock_ttl_ms))

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

    async def _safe_tick(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("sweeper.failed")

    def start(self) -> None:
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(self._safe_tick, "interval", seconds=self.interval_s, max_instances=1,
                                coalesce=True, id="deadline-sweep")
        self._scheduler.start()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        try:
            await self.runtime.redis.eval(_RELEASE, 1, self.lock_key, self.token)
        except Exception:
            log.warning("sweeper.release_failed")
