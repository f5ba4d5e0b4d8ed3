"""The transaction-and-ack core of a consumer: a batch in one transaction, acked once committed.

If the batch fails it is run entry by entry, so one poison entry holds up nothing behind it and
only what committed is acked; an entry that fails on its `max_deliveries`-th delivery goes to the
dead-letter stream with the reason; a failure of the infrastructure (`is_transient`) leaves the
entries pending for the claimer and never counts against them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.dead_letters import dead_letter
from marketplace.adapters.locks import FencedOut
from marketplace.services.context import ServiceContext
from workers.entries import Entry
from workers.failures import is_transient, reason_of
from workers.shared_transactions import Part, SharedTransactions
from workers.transactions import in_transaction

if TYPE_CHECKING:
    from workers.runtime import Runtime

Handler = Callable[[AsyncSession, Sequence[Any], ServiceContext], Awaitable[Any]]
# Runs first in every transaction of the consumer (the matcher's fencing check).
Guard = Callable[[AsyncSession], Awaitable[None]]


class BatchProcessor:
    def __init__(self, runtime: Runtime, stream: str, group: str, handler: Handler, *,
                 lock: asyncio.Lock | SharedTransactions, guard: Guard | None = None,
                 on_committed: Callable[[list[Entry]], None] | None = None, log: Any = None) -> None:
        """`lock`: the group's turn in this process; `SharedTransactions` runs the batches waiting
        for it together."""
        self.runtime = runtime
        self.stream, self.group, self.handler = stream, group, handler
        self.lock, self.guard, self.on_committed = lock, guard, on_committed
        self.consumer = runtime.settings.consumer_name
        self.max_deliveries = runtime.settings.max_deliveries
        self._log = log or structlog.get_logger(__name__).bind(stream=stream, group=group)

    async def process(self, entries: list[Entry]) -> None:
        """Run `entries` as one transaction; if that fails, one by one. Acked once committed.
        Poison never joins a transaction: it waits for its delivery limit on its own."""
        for entry in entries:
            if entry.poison is not None:
                await self._failed(entry, f"unreadable: {entry.poison}")
        entries = [e for e in entries if e.poison is None]
        if not entries:
            return
        try:
            await self._transaction(entries)
        except (asyncio.CancelledError, FencedOut):
            raise
        except Exception as exc:
            if is_transient(exc):
                # Nothing is wrong with the entries: they stay pending and come back through the claimer.
                raise
            if len(entries) == 1:
                await self._failed(entries[0], reason_of(exc))
                return
            self._log.warning("worker.batch_failed", count=len(entries), error=reason_of(exc))
            done: list[Entry] = []
            for entry in entries:
                try:
                    await self._transaction([entry])
                except (asyncio.CancelledError, FencedOut):
                    raise
                except Exception as one_exc:
                    if is_transient(one_exc):
                        await self._acknowledge(done)
                        raise
                    await self._failed(entry, reason_of(one_exc))
                else:
                    done.append(entry)
            await self._acknowledge(done)
        else:
            await self._acknowledge(entries)

    async def _transaction(self, entries: list[Entry]) -> None:
        rt = self.runtime
        bodies = [e.body for e in entries]

        async def handle(session: AsyncSession) -> None:
            if self.guard is not None:
                await self.guard(session)
            await self.handler(session, bodies, rt.context)

        if isinstance(self.lock, SharedTransactions):
            # A guarded batch (a fenced partition's) must run its own guard: it is never merged.
            part = Part(self.stream, bodies) if self.guard is None else None
            await self.lock.run(handle, part, len(entries))
        else:
            await in_transaction(rt.db, handle, lock=self.lock)
        if self.on_committed is not None:
            self.on_committed(entries)

    async def _acknowledge(self, entries: list[Entry]) -> None:
        ids = [e.id for e in entries if e.id]
        if ids:
            await self.runtime.redis.xack(self.stream, self.group, *ids)
        try:
            # What this batch staged, from memory; anything left over is the relay loop's.
            await self.runtime.relay.publish_committed()
        except Exception as exc:
            # Committed and staged: the relay's own loop publishes it once Redis or the database is back.
            self._log.warning("worker.flush_deferred", error=f"{type(exc).__name__}: {exc}")
            self.runtime.relay.poke()

    async def _failed(self, entry: Entry, reason: str) -> None:
        if entry.deliveries >= self.max_deliveries:
            await dead_letter(self.runtime.redis, self.runtime.streams.dead_letter, stream=self.stream,
                              group=self.group, entry_id=entry.id,
                              body=entry.raw if entry.raw is not None else entry.body, reason=reason,
                              deliveries=entry.deliveries, consumer=self.consumer)
            self._log.error("worker.dead_lettered", entry_id=entry.id, deliveries=entry.deliveries, reason=reason)
        else:
            # Left pending: the claimer retries it once it has been idle for claim_idle_ms.
            self._log.warning("worker.entry_failed", entry_id=entry.id, deliveries=entry.deliveries,
                              max_deliveries=self.max_deliveries, reason=reason)
