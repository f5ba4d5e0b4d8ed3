"""Matchers divide the book partitions between them: one writer per partition, fenced.

Every matcher process heartbeats into a sorted set of live matchers, so each knows how many there
are (N) and takes at most its fair share, ceil(partitions / N). It tries the partitions in its own
order (rendezvous hashing on its name, so two matchers do not race for the same ones), holds each
with a FencedLock renewed every ttl/3, and consumes a partition's book stream only while it holds
the lock. A matcher over its share (a new one joined) lets go of the surplus; a lock it fails to
renew (it paused, Redis lost it) stops its consumer; a write with its old token is refused anyway.
When it gets a partition, the previous holder's pending entries are taken over by its claimer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.locks import FencedLock, FencedOut, check_fence, fence, highest_token
from marketplace.services.context import ServiceContext
from workers.autoclear import AutoClearer
from workers.consumer import Guard, StreamConsumer
from workers.failures import is_transient
from workers.groups import ensure_group
from workers.tasks import cancel_and_wait

if TYPE_CHECKING:
    from workers.runtime import Runtime

log = structlog.get_logger(__name__)

# A partition's handler: it runs the fence (the guard) itself, before its first write.
FencedHandler = Callable[[AsyncSession, Sequence[Any], ServiceContext, Guard], Awaitable[Any]]


@dataclass
class _Held:
    lock: FencedLock
    consumer: StreamConsumer | None = None
    clearer: AutoClearer | None = None
    # Set when a write was refused (a newer token wrote): let go at the next balance.
    lost: bool = False


@dataclass
class Partition:
    """A book partition: its care area, its stream and the handler of its entries."""

    care_area: str
    stream: str
    group: str
    handler: FencedHandler


@dataclass
class PartitionManager:
    runtime: Runtime
    partitions: list[Partition]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    held: dict[str, _Held] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    @property
    def members_key(self) -> str:
        return f"{self.runtime.streams.prefix}:matchers"

    @property
    def name(self) -> str:
        return self.runtime.settings.consumer_name

    @property
    def ttl_ms(self) -> int:
        return self.runtime.settings.partition_lock_ttl_ms

    def preference(self) -> list[Partition]:
        def score(p: Partition) -> bytes:
            return hashlib.sha256(f"{self.name}/{p.care_area}".encode()).digest()
        return sorted(self.partitions, key=score)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="partitions")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        for care_area in list(self.held):
            await self._let_go(care_area, "stopping")
        with contextlib.suppress(Exception):
            await self.runtime.redis.zrem(self.members_key, self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self.balance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("partitions.balance_failed", error=f"{type(exc).__name__}: {exc}",
                            transient=is_transient(exc))
            await asyncio.sleep(self.ttl_ms / 3000)

    async def balance(self) -> None:
        """Renew what is held, give up the surplus, take free partitions up to the fair share."""
        redis = self.runtime.redis
        now_ms = int(time.time() * 1000)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.members_key, {self.name: now_ms + self.ttl_ms})
            pipe.zremrangebyscore(self.members_key, "-inf", now_ms)
            pipe.zcard(self.members_key)
            *_, members = await pipe.execute()
        share = math.ceil(len(self.partitions) / max(int(members), 1))
        for care_area, held in list(self.held.items()):
            if held.lost or not await held.lock.renew():
                await self._let_go(care_area, "lock lost")
        order = self.preference()
        surplus = [p for p in reversed(order) if p.care_area in self.held][: max(len(self.held) - share, 0)]
        for p in surplus:
            await self._let_go(p.care_area, "over fair share")
        for p in order:
            if len(self.held) >= share:
                break
            if p.care_area not in self.held:
                await self._try_take(p)

    async def _try_take(self, p: Partition) -> None:
        rt = self.runtime
        lock = FencedLock.for_partition(rt.redis, rt.streams.prefix, p.stream, self.name, self.ttl_ms)
        async with rt.db.session() as session:
            floor = await highest_token(session, p.stream)
        token = await lock.acquire(floor)
        if token is None:
            return
        await ensure_group(rt.redis, p.stream, p.group)
        held = _Held(lock=lock)

        async def guard(session: AsyncSession) -> None:
            await fence(session, p.stream, token, self.name)

        def fenced(_exc: FencedOut) -> None:
            held.lost = True

        if rt.settings.auto_clear_ms > 0:
            held.clearer = AutoClearer(rt, p.care_area, guard=guard, lock=self.lock, on_fenced=fenced)
            held.clearer.start()
        clearer = held.clearer
        async def handle(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
            # Most book batches only wake the auto-clearer and write nothing: a read tells a stale
            # holder to stop before it acks entries the new holder must see; the handler runs the
            # fence (a write) itself, before its first write.
            await check_fence(session, p.stream, token)
            await p.handler(session, items, ctx, guard)

        held.consumer = StreamConsumer(
            rt, p.stream, p.group, handle, lock=self.lock, on_fenced=fenced,
            on_committed=(lambda _entries: clearer.trigger()) if clearer else None)
        held.consumer.start()
        self.held[p.care_area] = held
        log.info("partitions.acquired", partition=p.stream, token=token, matcher=self.name)

    async def _let_go(self, care_area: str, why: str) -> None:
        held = self.held.pop(care_area)
        if held.consumer is not None:
            await held.consumer.stop()
        if held.clearer is not None:
            await held.clearer.stop()
        with contextlib.suppress(Exception):
            await held.lock.release()
        log.info("partitions.released", partition=held.lock.key, why=why, matcher=self.name)

    def owned(self) -> list[str]:
        return sorted(self.held)
