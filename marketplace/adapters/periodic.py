"""A job run every so often in this process, on the scheduler of the stack (APScheduler 3.x).

One run at a time (`max_instances=1`), runs missed while the loop was busy folded into one
(`coalesce`), and a job's failure logged, never ending the schedule.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = structlog.get_logger(__name__)


class Periodic:
    def __init__(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name, self.interval_s, self.job = name, interval_s, job
        self._scheduler: AsyncIOScheduler | None = None

    async def _run(self) -> None:
        try:
            await self.job()
        except Exception as exc:
            log.warning("periodic.failed", job=self.name, error=f"{type(exc).__name__}: {exc}")

    def start(self) -> None:
        """Start the schedule (the first run one interval from now); needs a running event loop."""
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        self._scheduler.add_job(self._run, "interval", seconds=self.interval_s, max_instances=1, coalesce=True,
                                id=self.name)
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the schedule; a run in progress is cancelled."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
