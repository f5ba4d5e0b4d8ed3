"""The batches of one group's consumers in a process, run in one transaction when they arrive together.

Intake reads one ingress stream per party (the stream says who sent an entry), some thirty
consumers in one process. Their transactions took turns under one lock, one batch each, so at a
few hundred events a second spread over the parties every transaction carried an event or two
and its fixed cost (the connection's check-out, the inbox and chain reads, the commit) was paid
per event: at 200 events a second intake was near a full core and an entry waited 0.75 s at the
median, 1.15 s at the 99th percentile, for its turn.

Here the batches that arrive while a transaction runs wait for it, and the first of them to go
on takes all the waiting ones into the next transaction (group commit): the more arrives, the
more each transaction carries, and a lone batch is run as before. Between two batches the session
writes what it has collected (rows appended in bulk, the book's changes) and flushes, so the
second reads what the first wrote, as it would after a commit.

A group whose handler can take several consumers' batches in one call (intake: `handle_parts`,
one read per table for all the parties' entries) is given it as `merge`, and the batches taken
together are handed to it as data (`Part`) rather than run one after another: then a transaction
costs its fixed reads and writes once, whatever the number of streams its entries came on.

If the shared transaction fails (after `in_transaction`'s retries of a lost race) each batch is
run again alone, so a poison entry costs only its own consumer: that consumer gets the error and
goes on as it would have (entry by entry, the delivery limit, the dead letters). A failure of the
infrastructure (`is_transient`) is handed to every batch at once: none of them is to blame, and
running them again one by one would only wait for the same outage a dozen times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.appends import write_appends
from marketplace.adapters.database import Database
from marketplace.adapters.slots import write_settled
from workers.failures import is_transient, reason_of
from workers.transactions import in_transaction

Work = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class Part:
    """One consumer's batch as data: the stream it was read from and the entries' bodies."""

    stream: str
    bodies: Sequence[Any]


Merge = Callable[[AsyncSession, list[Part]], Awaitable[None]]

log = structlog.get_logger(__name__)


@dataclass
class _Batch:
    work: Work
    part: Part | None
    entries: int
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TransactionAbandoned(ConnectionError):
    """The consumer that ran this batch's shared transaction was stopped before it committed; the
    entries stay pending (a failure of the infrastructure's kind, not the entries')."""


class SharedTransactions:
    """One group's transactions in this process: one at a time, the waiting ones run together."""

    def __init__(self, db: Database, group: str, merge: Merge | None = None, *, most_entries: int) -> None:
        """`most_entries`: what one transaction takes at most (a consumer's batch size), so that a
        flood is cut into transactions the next stage can start on while this one writes the next."""
        self.db, self.group, self.merge, self.most_entries = db, group, merge, most_entries
        self._lock = asyncio.Lock()
        self._waiting: list[_Batch] = []

    async def run(self, work: Work, part: Part | None = None, entries: int = 1) -> None:
        """`work(session)` committed, alone or with the batches waiting beside it; its own error if
        not. `part`: the same batch as data, for the group's `merge`; `entries`: how many it holds."""
        batch = _Batch(work, part, entries)
        self._waiting.append(batch)
        try:
            async with self._lock:
                if not batch.done.done():
                    taken = self._take()
                    try:
                        await self._run_taken(taken)
                    except asyncio.CancelledError:
                        for other in taken:
                            if other is not batch:
                                _abandon(other)
                        raise
        except asyncio.CancelledError:
            if batch in self._waiting:  # stopped before anyone took it: nobody runs it now
                self._waiting.remove(batch)
            raise
        await batch.done

    def _take(self) -> list[_Batch]:
        """The waiting batches in the order they came, as many as fit in `most_entries` (one at least)."""
        count, total = 0, 0
        for batch in self._waiting:
            if count and total + batch.entries > self.most_entries:
                break
            count, total = count + 1, total + batch.entries
        taken, self._waiting = self._waiting[:count], self._waiting[count:]
        return taken

    async def _run_taken(self, taken: list[_Batch]) -> None:
        if len(taken) > 1:
            parts = [batch.part for batch in taken if batch.part is not None]

            async def together(session: AsyncSession) -> None:
                if self.merge is not None and len(parts) == len(taken):
                    await self.merge(session, parts)
                    return
                for n, batch in enumerate(taken):
                    if n:
                        await _written(session)
                    await batch.work(session)

            try:
                # A lost race is tried once more together; past that each batch tries on its own.
                await in_transaction(self.db, together, attempts=2)
            except Exception as exc:
                if is_transient(exc):
                    for batch in taken:
                        batch.done.set_exception(exc)
                    return
                # reason_of: an error's text may repeat what a region sent, which is not for a log line.
                log.info("worker.shared_transaction_split", group=self.group, batches=len(taken),
                         error=reason_of(exc))
            else:
                for batch in taken:
                    batch.done.set_result(None)
                return
        for batch in taken:
            try:
                await in_transaction(self.db, batch.work)
            except Exception as exc:
                batch.done.set_exception(exc)
            else:
                batch.done.set_result(None)


def _abandon(batch: _Batch) -> None:
    if not batch.done.done():
        batch.done.set_exception(TransactionAbandoned("stopped before its shared transaction committed"))


async def _written(session: AsyncSession) -> None:
    """What the batches so far collected, in the database (still uncommitted) for the next to read."""
    await session.flush()
    await write_settled(session)
    await write_appends(session)
