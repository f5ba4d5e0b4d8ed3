"""One consumer of one (stream, group): a reader of new entries and a claimer of abandoned ones.

Why not FastStream's subscribers (tried first, see workers/README notes in the report): its
claimer (`min_idle_time`) claims one entry per XAUTOCLAIM and gives no delivery count, a subscriber
stops for good on NOGROUP, sleeps a fixed 5 s after any connection error, acks a batch all or
nothing, and the matcher has to start and stop partitions at run time. These loops are plain
redis-py and do exactly what the delivery guarantees need:

- reader: XREADGROUP `>` in batches; the batch runs in one transaction; acked after commit.
- claimer: XAUTOCLAIM of entries pending longer than `claim_idle_ms` (a consumer that died, or a
  failed entry waiting for its retry), with their delivery counts from XPENDING.
- a batch that fails is retried entry by entry, so one poison entry holds up nothing behind it;
  an entry that still fails on its `max_deliveries`-th delivery goes to the dead-letter stream.
- failures of the infrastructure (Redis or the database unreachable) never count as poison: the
  entries stay pending and are retried when it is back.
- NOGROUP (group deleted, Redis restarted empty) recreates the group at the start of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.dead_letters import DATA_FIELD, dead_letter
from marketplace.adapters.locks import FencedOut
from marketplace.services.context import ServiceContext
from workers.groups import ensure_group

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, Sequence[Any], ServiceContext], Awaitable[Any]]
# Runs first in every transaction of the consumer (the matcher's fencing check).
Guard = Callable[[AsyncSession], Awaitable[None]]

# A transaction that lost a race (another writer took a case's next timeline version, SQLite was
# busy) is run again from the start; it left nothing behind.
TRANSACTION_ATTEMPTS = 5
BACKOFF_MAX_S = 2.0


@dataclass
class Entry:
    id: str
    body: bytes | str
    deliveries: int = 1


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure, not of the entry: they never send an entry to the dead letters."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # asyncpg's own connection errors, when they surface unwrapped
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def entry_body(fields: dict[Any, Any] | None) -> bytes | str:
    """The envelope of an entry: `__data__`, or (as FastStream reads it) all fields as JSON."""
    if not fields:
        return b""
    for key, value in fields.items():
        if _text(key) == DATA_FIELD:
            return value
    return json.dumps({_text(k): _text(v) for k, v in fields.items()})


class StreamConsumer:
    def __init__(self, runtime: Runtime, stream: str, group: str, handler: Handler, *,
                 lock: asyncio.Lock | None = None, guard: Guard | None = None,
                 on_committed: Callable[[list[Entry]], None] | None = None,
                 on_fenced: Callable[[FencedOut], None] | None = None) -> None:
        self.runtime = runtime
        self.stream, self.group, self.handler = stream, group, handler
        self.lock = lock or asyncio.Lock()
        self.guard, self.on_committed, self.on_fenced = guard, on_committed, on_fenced
        s = runtime.settings
        self.consumer = s.consumer_name
        self.batch_size = s.batch_size
        self.block_ms = s.polling_interval_ms
        self.claim_idle_ms = s.claim_idle_ms
        self.claim_interval_s = s.claim_interval_ms / 1000
        self.max_deliveries = s.max_deliveries
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._log = log.bind(stream=stream, group=group, consumer=self.consumer)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._stop_event.clear()
        self._tasks = [
            asyncio.create_task(self._loop(self._read_once, "read"), name=f"read {self.group}<-{self.stream}"),
            asyncio.create_task(self._loop(self._claim_once, "claim"), name=f"claim {self.group}<-{self.stream}"),
        ]

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    async def stop(self, graceful_s: float = 10.0) -> None:
        """Finish the batch in hand (up to `graceful_s`), then stop reading."""
        self._stopping = True
        self._stop_event.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=graceful_s)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, step: Callable[[], Awaitable[bool]], what: str) -> None:
        """Run `step` until stopped; infrastructure errors back off, NOGROUP recreates the group."""
        backoff = 0.05
        while not self._stopping:
            try:
                busy = await step()
                backoff = 0.05
                if not busy and what == "claim":
                    await self._pause(self.claim_interval_s)
            except asyncio.CancelledError:
                raise
            except FencedOut as exc:
                self._log.warning("worker.fenced_out", token=exc.token, current=exc.current)
                self._stopping = True
                if self.on_fenced:
                    self.on_fenced(exc)
                return
            except Exception as exc:
                if is_nogroup(exc):
                    self._log.warning("worker.group_recreated", loop=what)
                    with contextlib.suppress(Exception):
                        await ensure_group(self.runtime.redis, self.stream, self.group)
                    continue
                level = "warning" if is_transient(exc) else "error"
                getattr(self._log, level)("worker.loop_error", loop=what, error=f"{type(exc).__name__}: {exc}",
                                          retry_in_s=backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    # --- reading and claiming --------------------------------------------------------------------

    async def _read_once(self) -> bool:
        response = await self.runtime.redis.xreadgroup(
            groupname=self.group, consumername=self.consumer, streams={self.stream: ">"},
            count=self.batch_size, block=self.block_ms)
        if self._stopping:
            # Read while stopping: left pending, the claimer (here or elsewhere) gets it.
            return False
        entries = [Entry(_text(eid), entry_body(fields)) for _, items in response or () for eid, fields in items]
        if entries:
            await self.process(entries)
        return bool(entries)

    async def _claim_once(self) -> bool:
        """One XAUTOCLAIM sweep over the whole pending list; True when it claimed something."""
        redis = self.runtime.redis
        cursor = "0-0"
        claimed_any = False
        while not self._stopping:
            reply = await redis.xautoclaim(self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
                                           start_id=cursor, count=self.batch_size)
            cursor, items = _text(reply[0]), reply[1]
            live = [(_text(eid), fields) for eid, fields in items if fields is not None]
            gone = [_text(eid) for eid, fields in items if fields is None]
            if gone:
                # Redis 6.2 still hands out ids whose entries were deleted: nothing left to do for them.
                await redis.xack(self.stream, self.group, *gone)
            if live:
                claimed_any = True
                counts = await self._delivery_counts([eid for eid, _ in live])
                entries = [Entry(eid, entry_body(fields), counts.get(eid, 2)) for eid, fields in live]
                self._log.info("worker.claimed", count=len(entries), max_deliveries=max(e.deliveries for e in entries))
                await self.process(entries)
            if cursor == "0-0":
                break
        return claimed_any

    async def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        rows = await self.runtime.redis.xpending_range(self.stream, self.group, min=ids[0], max=ids[-1],
                                                       count=len(ids) + 100, consumername=self.consumer)
        return {_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    # --- processing ------------------------------------------------------------------------------

    async def process(self, entries: list[Entry]) -> None:
        """Run `entries` as one transaction; if that fails, one by one. Acked once committed."""
        try:
            await self._transaction(entries)
        except (asyncio.CancelledError, FencedOut):
            raise
        except Exception as exc:
            if is_transient(exc):
                # Nothing is wrong with the entries: they stay pending and come back through the claimer.
                raise
            if len(entries) == 1:
                await self._failed(entries[0], exc)
                return
            self._log.warning("worker.batch_failed", count=len(entries), error=f"{type(exc).__name__}: {exc}")
            done = []
            for entry in entries:
                try:
                    await self._transaction([entry])
                except (asyncio.CancelledError, FencedOut):
                    raise
                except Exception as one_exc:
                    if is_transient(one_exc):
                        raise
                    await self._failed(entry, one_exc)
                else:
                    done.append(entry)
            await self._acknowledge(done)
        else:
            await self._acknowledge(entries)

    async def _transaction(self, entries: list[Entry]) -> None:
        rt = self.runtime
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                async with self.lock, rt.db.session() as session:
                    if self.guard is not None:
                        await self.guard(session)
                    await self.handler(session, [e.body for e in entries], rt.context)
                    await session.commit()
                break
            except (IntegrityError, OperationalError) as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                self._log.info("worker.transaction_retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.02 * attempt)
        if self.on_committed is not None:
            self.on_committed(entries)

    async def _acknowledge(self, entries: list[Entry]) -> None:
        if entries:
            await self.runtime.redis.xack(self.stream, self.group, *(e.id for e in entries))
        try:
            await self.runtime.relay.flush()
        except Exception as exc:
            # Committed and staged: the relay's own loop publishes it once Redis or the database is back.
            self._log.warning("worker.flush_deferred", error=f"{type(exc).__name__}: {exc}")
            self.runtime.relay.poke()

    async def _failed(self, entry: Entry, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if entry.deliveries >= self.max_deliveries:
            await dead_letter(self.runtime.redis, self.runtime.streams.dead_letter, stream=self.stream,
                              group=self.group, entry_id=entry.id, body=entry.body, reason=reason,
                              deliveries=entry.deliveries, consumer=self.consumer)
            self._log.error("worker.dead_lettered", entry_id=entry.id, deliveries=entry.deliveries, reason=reason)
        else:
            # Left pending: the claimer retries it once it has been idle for claim_idle_ms.
            self._log.warning("worker.entry_failed", entry_id=entry.id, deliveries=entry.deliveries,
                              max_deliveries=self.max_deliveries, reason=reason)
