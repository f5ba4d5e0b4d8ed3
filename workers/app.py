"""The worker roles wired onto Redis Streams consumer groups.

One process may host any subset of the roles (`nvf run --role ...`); the demo hosts all of them.
Each (stream, group) pair has one service handler; a subscriber reads a batch, runs the handler in
one database transaction, commits, and lets the outbox relay publish what the handler staged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import structlog
from faststream.redis import StreamSub
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession

from events.streams import GROUP_INTAKE, GROUP_MATCHER, GROUP_NOTIFIER, GROUP_TIMELINE
from marketplace.services import clearing, intake, notification, timeline
from marketplace.services.context import ServiceContext
from matchers.reference import care_areas as all_care_areas
from workers.groups import ensure_group
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

ROLES = ("intake", "matcher", "notifier", "timeline")
# A batch that lost a race (another writer took a case's next timeline version, SQLite was busy)
# is run again from the start; its transaction left nothing behind.
TRANSACTION_ATTEMPTS = 5

Handler = Callable[[AsyncSession, Sequence[Any], ServiceContext], Awaitable[Any]]


def subscriptions(runtime: Runtime, roles: Iterable[str],
                  care_areas: Iterable[str] | None = None) -> list[tuple[str, str, Handler]]:
    """(stream, group, handler) of every subscriber the given roles need."""
    st = runtime.streams
    wanted = set(roles)
    pairs: list[tuple[str, str, Handler]] = []
    if "intake" in wanted:
        pairs.append((st.intake, GROUP_INTAKE, intake.handle_batch))
    if "matcher" in wanted:
        areas = list(care_areas) if care_areas is not None else sorted(all_care_areas())
        pairs += [(st.book(area), GROUP_MATCHER, clearing.handle_batch) for area in areas]
    if "notifier" in wanted:
        pairs.append((st.matches, GROUP_NOTIFIER, notification.handle_batch))
    if "timeline" in wanted:
        pairs += [(stream, GROUP_TIMELINE, timeline.handle_batch)
                  for stream in (st.cases, st.matches, st.messages)]
    return pairs


def stream_groups(runtime: Runtime, roles: Iterable[str]) -> list[tuple[str, str]]:
    return [(stream, group) for stream, group, _ in subscriptions(runtime, roles)]


def register_workers(runtime: Runtime, roles: Iterable[str] = ROLES) -> list[tuple[str, str]]:
    """Add the subscribers of `roles` to the runtime's broker; returns their (stream, group) pairs."""
    s = runtime.settings
    # Handlers of one process that write the same rows (timelines) take turns; other processes
    # are kept apart by the database's unique keys and the retry below.
    group_locks: dict[str, asyncio.Lock] = {}
    for stream, group, handler in subscriptions(runtime, roles):
        sub = StreamSub(stream, group=group, consumer=s.consumer_name, batch=True, max_records=s.batch_size,
                        polling_interval=s.polling_interval_ms)
        lock = group_locks.setdefault(group, asyncio.Lock())
        runtime.broker.subscriber(stream=sub, title=f"{group} <- {stream}")(
            _batch_consumer(runtime, group, handler, lock))
    return stream_groups(runtime, roles)


def _batch_consumer(runtime: Runtime, group: str, handler: Handler,
                    lock: asyncio.Lock) -> Callable[[list[Any]], Awaitable[None]]:
    async def consume(body: list[Any]) -> None:
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                async with lock, runtime.db.session() as session:
                    await handler(session, body, runtime.context)
                    await session.commit()
                break
            except (IntegrityError, OperationalError) as exc:
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                log.info("worker.transaction_retry", group=group, attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(0.02 * attempt)
        await runtime.relay.flush()

    consume.__name__ = f"consume_{group}"
    return consume


async def prepare(runtime: Runtime, pairs: Iterable[tuple[str, str]]) -> None:
    """Connect, create the tables and the consumer groups (at the start of each stream)."""
    await runtime.connect()
    await runtime.db.create_all()
    for stream, group in pairs:
        await ensure_group(runtime.redis, stream, group)


@contextlib.asynccontextmanager
async def running(runtime: Runtime, roles: Iterable[str] = ROLES) -> AsyncIterator[Runtime]:
    """Run the given roles until the block exits; the outbox relay runs beside them."""
    pairs = register_workers(runtime, roles)
    await prepare(runtime, pairs)
    await runtime.broker.start()
    relay_task = asyncio.create_task(runtime.relay.run(), name="outbox-relay")
    try:
        yield runtime
    finally:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await runtime.broker.stop()
