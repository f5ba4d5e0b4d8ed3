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
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events.parties import NOTIFIER, channel_party
from events.streams import GROUP_CAPACITY, GROUP_INTAKE, GROUP_MATCHER, GROUP_NOTIFIER, GROUP_TIMELINE, Streams
from marketplace.adapters.periodic import Periodic
from marketplace.parties import ingress_parties
from marketplace.services import capacity, clearing, intake, notification, provenance, timeline
from marketplace.services.context import ServiceContext
from matchers.reference import care_areas as all_care_areas
from workers.consumer import Handler, StreamConsumer
from workers.failures import is_transient
from workers.groups import ensure_group
from workers.partitions import FencedHandler, Partition, PartitionManager
from workers.runtime import Runtime
from workers.shared_transactions import Merge, Part, SharedTransactions
from workers.tasks import cancel_and_wait
from workers.transactions import TRANSACTION_ATTEMPTS
from workers.trimming import region_read_streams, trim_acknowledged, trim_older_than

log = structlog.get_logger(__name__)

ROLES = ("intake", "matcher", "notifier", "timeline")
# Groups whose (stream, group) pairs are partitions with one writer each, divided between processes,
# and their handlers, which take the partition's fence and run it before their first write.
PARTITIONED_GROUPS: dict[str, FencedHandler] = {GROUP_MATCHER: clearing.handle_batch}
# Groups whose handler also takes the batches of several of its streams in one call (one read per
# table for all of them): their batches waiting for a turn go to it together.
PartsHandler = Callable[[AsyncSession, list[tuple[list[Any], ServiceContext]]], Awaitable[Any]]
MERGED: dict[str, PartsHandler] = {GROUP_INTAKE: intake.handle_parts}

__all__ = ["ROLES", "TRANSACTION_ATTEMPTS", "Handler", "Running", "Workers", "prepare", "register_workers",
           "running", "stream_groups", "subscriptions"]


@dataclasses.dataclass(frozen=True)
class Workers:
    """The consumers and the matcher's book partitions of one runtime's roles."""

    consumers: tuple[StreamConsumer, ...] = ()
    partitions: PartitionManager | None = None

    def start(self) -> None:
        for consumer in self.consumers:
            consumer.start()
        if self.partitions is not None:
            self.partitions.start()

    async def stop(self) -> None:
        if self.partitions is not None:
            await self.partitions.stop()
        await asyncio.gather(*(c.stop() for c in self.consumers))


@dataclasses.dataclass(frozen=True)
class Running:
    """What `running` started, role by role (one `Workers` per role's runtime, or one for all)."""

    runtime: Runtime
    workers: tuple[Workers, ...]

    @property
    def consumers(self) -> list[StreamConsumer]:
        return [c for w in self.workers for c in w.consumers]

    def partitions_held(self) -> list[str]:
        return [p for w in self.workers if w.partitions is not None for p in w.partitions.owned()]


def screened(handler: Any, streams: Streams, stream: str, group: str) -> Any:
    """`handler` behind the producer check of `stream` (marketplace/services/provenance.py): what
    the stream's writers may not have produced is refused and recorded, and never reaches it. A
    partition's fence (the handler's fourth argument) runs before the refusal is recorded."""

    async def run(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext, *fence: Any) -> Any:
        admitted, ctx = await _screen(session, items, ctx, streams, stream, group, *fence)
        return await handler(session, admitted, ctx, *fence)

    return run


def screened_parts(handler: PartsHandler, runtime: Runtime, group: str) -> Merge:
    """`handler`, which takes several streams' batches at once (`intake.handle_parts`), each batch
    behind its own stream's producer check and with its own channel."""

    async def run(session: AsyncSession, parts: list[Part]) -> None:
        await handler(session, [await _screen(session, part.bodies, runtime.context, runtime.streams, part.stream,
                                              group) for part in parts])

    return run


async def _screen(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext, streams: Streams, stream: str,
                  group: str, *fence: Any) -> tuple[list[Any], ServiceContext]:
    """What of `items` the stream's writers may have produced, and the context naming its channel."""
    admitted = await provenance.screen(session, items, ctx, stream=stream, group=group,
                                       before_write=fence[0] if fence else None)
    party = channel_party(streams, stream)
    return admitted, ctx if party is None else dataclasses.replace(ctx, channel=party)


def subscriptions(runtime: Runtime, roles: Iterable[str],
                  care_areas: Iterable[str] | None = None) -> list[tuple[str, str, Handler]]:
    """(stream, group, handler) of every consumer the given roles need, each behind its stream's
    producer check."""
    return [(stream, group, screened(handler, runtime.streams, stream, group))
            for stream, group, handler in _subscriptions(runtime, roles, care_areas)]


def _subscriptions(runtime: Runtime, roles: Iterable[str],
                   care_areas: Iterable[str] | None = None) -> list[tuple[str, str, Handler]]:
    st = runtime.streams
    wanted = set(roles)
    pairs: list[tuple[str, str, Handler]] = []
    if "intake" in wanted:
        # One ingress stream per party: the stream an entry arrives on says who sent it.
        pairs += [(st.ingress(party), GROUP_INTAKE, intake.handle_batch) for party in ingress_parties()]
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


def register_workers(runtime: Runtime, roles: Iterable[str] = ROLES) -> Workers:
    """The consumers of `roles` on the runtime's broker, not yet started (`running` starts them)."""
    # Handlers of one process that write the same rows (timelines) take turns, and the batches
    # waiting for their turn go together (workers/shared_transactions.py); other processes are
    # kept apart by the database's unique keys and the transaction retry. A matcher partition's
    # transactions are fenced each on its own, so they only take turns.
    shared: dict[str, SharedTransactions] = {}
    partitions: list[Partition] = []
    consumers: list[StreamConsumer] = []
    for stream, group, handler in subscriptions(runtime, roles):
        if group in PARTITIONED_GROUPS:
            # `screened` passes the partition's fence on to the handler.
            partitions.append(Partition(_care_area_of(runtime, stream), stream, group, cast(FencedHandler, handler)))
        else:
            if group not in shared:
                merge = screened_parts(MERGED[group], runtime, group) if group in MERGED else None
                shared[group] = SharedTransactions(runtime.db, group, merge, most_entries=runtime.settings.batch_size)
            turn = shared[group]
            consumers.append(StreamConsumer(runtime, stream, group, handler, lock=turn))
    manager = PartitionManager(runtime, partitions, lock=asyncio.Lock()) if partitions else None
    return Workers(tuple(consumers), manager)


async def prepare(runtime: Runtime, pairs: Iterable[tuple[str, str]]) -> None:
    """Connect, bring the schema to head (or refuse: `SchemaNotCurrent`) and create the consumer
    groups (at the start of each stream)."""
    await runtime.connect()
    await runtime.db.ensure_schema(auto_migrate=runtime.settings.db_auto_migrate)
    for stream, group in pairs:
        try:
            await ensure_group(runtime.redis, stream, group)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Redis went away while the roles were starting (one after another, as their own
            # users): each consumer's supervisor creates its group once Redis is back.
            log.warning("worker.group_deferred", stream=stream, group=group, error=f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def running(runtime: Runtime, roles: Iterable[str] = ROLES) -> AsyncIterator[Running]:
    """Run the given roles until the block exits; the outbox relay and the trimmer run beside them.

    With the parties' credentials (`runtime.credentials`) each role runs in its own runtime,
    connected as its own Redis user (`runtime.roles[role]`); `runtime` keeps its own connection
    for the caller."""
    if runtime.credentials is None:
        async with _running(runtime, roles) as workers:
            yield Running(runtime, (workers,))
        return
    # This connection publishes nothing of the roles' (each role's relay does, as its user).
    runtime.relay.producers = frozenset()
    await runtime.connect()
    try:
        async with contextlib.AsyncExitStack() as stack:
            started = [await stack.enter_async_context(_running(runtime.for_party(role), (role,)))
                       for role in roles]
            yield Running(runtime, tuple(started))
    finally:
        for role in roles:
            runtime.roles.pop(role, None)
        await runtime.broker.stop()


@contextlib.asynccontextmanager
async def _running(runtime: Runtime, roles: Iterable[str]) -> AsyncIterator[Workers]:
    roles = tuple(roles)
    workers = register_workers(runtime, roles)
    pairs = stream_groups(runtime, roles)
    await prepare(runtime, pairs)
    await runtime.broker.start()
    workers.start()
    background: list[asyncio.Task[Any]] = [asyncio.create_task(runtime.relay.run(), name="outbox-relay")]
    trimmer: Periodic | None = None
    if runtime.settings.trim_interval_s > 0:
        # The streams this process consumes, trimmed against every group of every role on them
        # (another role's backlog counts); each is trimmed by a process that consumes it.
        own = {stream for stream, _ in pairs}
        everything = [(s, g) for s, g in stream_groups(runtime, ROLES) if s in own]
        retention_s = runtime.settings.region_stream_retention_days * 86_400
        # The notifier writes what the regions read (their answers, feeds and inboxes) and may trim it.
        by_age = region_read_streams(runtime.streams) if retention_s and NOTIFIER in roles else []

        async def trim() -> None:
            await trim_acknowledged(runtime.redis, everything)
            if by_age:
                await trim_older_than(runtime.redis, by_age, retention_s)

        trimmer = Periodic("trimmer", runtime.settings.trim_interval_s, trim)
        trimmer.start()
    try:
        yield workers
    finally:
        if trimmer is not None:
            trimmer.stop()
        await cancel_and_wait(*background)
        await workers.stop()
        await runtime.broker.stop()
