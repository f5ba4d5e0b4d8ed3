"""Continuous clearing of one partition: a round soon after new book items arrive (NVF_AUTO_CLEAR_MS).

Debounced: the first arrival arms a timer of `auto_clear_ms`; whatever else arrives meanwhile is
cleared in the same round; arrivals during a round arm the next one. So a new item waits at most
about `auto_clear_ms` plus one round, and a burst costs one round, not one per item. The round is
`clearing.run_continuous_round`: incremental (it reads only the cases an offer with room may serve
and those no round has read, and gives the whole book's optimum), in a transaction fenced like the
partition's consumer, so only the partition's writer clears it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.locks import FencedOut
from marketplace.lifecycle.swedish_time import swedish_date
from marketplace.services import clearing
from workers.consumer import Guard
from workers.tasks import cancel_and_wait
from workers.transactions import in_transaction

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = structlog.get_logger(__name__)


class AutoClearer:
    def __init__(self, runtime: Runtime, care_area: str, *, guard: Guard, lock: asyncio.Lock,
                 on_fenced: Callable[[FencedOut], None] | None = None) -> None:
        self.runtime, self.care_area, self.guard, self.lock = runtime, care_area, guard, lock
        self.on_fenced = on_fenced
        self.delay_s = runtime.settings.auto_clear_ms / 1000
        self.policy = runtime.settings.auto_clear_policy
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def trigger(self) -> None:
        self._wanted.set()

    def start(self) -> None:
        # A partition just taken over may already hold cases waiting for a round.
        self._wanted.set()
        self._task = asyncio.create_task(self._run(), name=f"auto-clear {self.care_area}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self.delay_s)
            self._wanted.clear()
            try:
                await self.clear_once()
            except asyncio.CancelledError:
                raise
            except FencedOut as exc:
                log.warning("auto_clear.fenced_out", care_area=self.care_area, token=exc.token)
                if self.on_fenced:
                    self.on_fenced(exc)
                return
            except Exception as exc:
                log.warning("auto_clear.failed", care_area=self.care_area, error=f"{type(exc).__name__}: {exc}")
                self._wanted.set()
                await asyncio.sleep(min(1.0, self.delay_s * 10 + 0.1))

    async def clear_once(self) -> str | None:
        """One round of the partition if it has cases on the book; returns its round id."""
        rt = self.runtime

        async def clear_round(session: AsyncSession) -> str | None:
            await self.guard(session)
            return await clearing.run_continuous_round(session, rt.context, self.care_area,
                                                       swedish_date(rt.context.clock()), self.policy)

        round_id = await in_transaction(rt.db, clear_round, lock=self.lock)
        if round_id is not None:
            await rt.relay.publish_committed()
        return round_id
