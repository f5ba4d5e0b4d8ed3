"""The worker roles wired onto Redis Streams consumer groups.

One process may host any subset of the roles (`nvf run --role ...`); the demo hosts all of them.
Each (stream, group) pair has one service handler; its consumer (workers/consumer.py) reads a
batch, runs the handler in one database transaction, commits, acks, and lets the outbox relay
publish what the handler staged; a claimer in the same group takes over what a dead consumer left
pending, and an entry that keeps failing goes to the dead-letter stream.

The matcher's pairs are book partitions: they are not consumed by every matcher process but by the
one holding the partition's fenced lock (workers/partitions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import structlog

from events.streams import GROUP_CAPACITY, GROUP_INTAKE, GROUP_MATCHER, GROUP_NOTIFIER, GROUP_TIMELINE
from marketplace.services import capacity, clearing, intake, notification, timeline
from matchers.reference import care_areas as all_care_areas
from workers.consumer import TRANSACTION_ATTEMPTS, Handler, StreamConsumer
from workers.groups import ensure_group
from workers.partitions import FencedHandler, Partition, PartitionManager
from workers.runtime import Runtime
from workers.tasks import cancel_and_wait
from workers.trimming import trim_forever

log = structlog.get_logger(__name__)

ROLES = ("intake", "matcher", "notifier", "timeline")
# Groups whose (stream, group) pairs are partitions with one writer each, divided between processes,
# and their handlers, which take the partition's fence and run it before their first write.
PARTITIONED_GROUPS: dict[str, FencedHandler] = {GROUP_MATCHER: clearing.handle_batch}

__all__ = ["ROLES", "TRANSACTION_ATTEMPTS", "Handler", "prepare", "register_workers", "running",
           "stream_groups", "subscriptions"]


def subscriptions(runtime: Runtime, roles: Iterable[str],
                  care_areas: Iterable[str] | None = None) -> list[tuple[str, str, Handler]]:
    """(stream, group, handler) of every consumer the given roles need."""
    st = runtime.streams
    wanted = set(roles)
    pairs: list[tuple[str, str, Handler]] = []
    if "intake" in wanted:
        pairs.append((st.intake, GROUP_INTAKE, intake.handle_batch))
    if "matcher" in wanted:
        areas = list(care_areas) if care_areas is not None else sorted(all_care_areas())
        pairs += [(st.book(area), GROUP_MATCHER, clearing.handle_batch) for area in areas]
    if "notifier" in wanted:
        # Case events, parties' sealed submissions and their receipts; keys in <state dir>/keys.
        pairs += [(stream, GROUP_NOTIFIER, handler)
                  for stream, handler in notification.handlers(st, runtime.settings.state_dir)]
    if "timeline" in wanted:
        pairs += [(stream, GROUP_TIMELINE, timeline.handle_batch)
                  for stream in (st.cases, st.matches, st.messages)]
        # The read models beside the timelines: the units' free-capacity feed, from offers, matches and
        # released holds.
        areas = list(care_areas) if care_areas is not None else sorted(all_care_areas())
        pairs += [(stream, GROUP_CAPACITY, capacity.handle_batch)
                  for stream in (*(st.book(area) for area in areas), st.matches, st.cases)]
    return pairs


def stream_groups(runtime: Runtime, roles: Iterable[str]) -> list[tuple[str, str]]:
    return [(stream, group) for stream, group, _ in subscriptions(runtime, roles)]


def _care_area_of(runtime: Runtime, stream: str) -> str:
    return stream.removeprefix(runtime.streams.book(""))


def register_workers(runtime: Runtime, roles: Iterable[str] = ROLES) -> list[tuple[str, str]]:
    """Create the consumers of `roles` on the runtime (started by `running`); returns their pairs."""
    # Handlers of one process that write the same rows (timelines) take turns; other processes
    # are kept apart by the database's unique keys and the transaction retry.
    group_locks: dict[str, asyncio.Lock] = {}
    partitions: list[Partition] = []
    for stream, group, handler in subscriptions(runtime, roles):
        lock = group_locks.setdefault(group, asyncio.Lock())
        if group in PARTITIONED_GROUPS:
            partitions.append(Partition(_care_area_of(runtime, stream), stream, group, PARTITIONED_GROUPS[group]))
        else:
            runtime.consumers.append(StreamConsumer(runtime, stream, group, handler, lock=lock))
    if partitions:
        runtime.partitions = PartitionManager(runtime, partitions, lock=group_locks[GROUP_MATCHER])
    return stream_groups(runtime, roles)


async def prepare(runtime: Runtime, pairs: Iterable[tuple[str, str]]) -> None:
    """Connect, create the tables and the consumer groups (at the start of each stream)."""
    await runtime.connect()
    await runtime.db.create_all()
    for stream, group in pairs:
        await ensure_group(runtime.redis, stream, group)


@contextlib.asynccontextmanager
async def running(runtime: Runtime, roles: Iterable[str] = ROLES) -> AsyncIterator[Runtime]:
    """Run the given roles until the block exits; the outbox relay and the trimmer run beside them."""
    pairs = register_workers(runtime, roles)
    await prepare(runtime, pairs)
    await runtime.broker.start()
    for consumer in runtime.consumers:
        consumer.start()
    if runtime.partitions is not None:
        runtime.partitions.start()
    background: list[asyncio.Task[Any]] = [asyncio.create_task(runtime.relay.run(), name="outbox-relay")]
    if runtime.settings.trim_interval_s > 0:
        # Trim against every group of every role, not only this process's: another role's backlog counts.
        everything = stream_groups(runtime, ROLES)
        background.append(asyncio.create_task(
            trim_forever(runtime.redis, everything, runtime.settings.trim_interval_s), name="trimmer"))
    try:
        yield runtime
    finally:
        await cancel_and_wait(*background)
        if runtime.partitions is not None:
            await runtime.partitions.stop()
        await asyncio.gather(*(c.stop() for c in runtime.consumers))
        runtime.consumers.clear()
        runtime.partitions = None
        await runtime.broker.stop()
