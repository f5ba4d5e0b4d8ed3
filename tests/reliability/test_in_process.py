"""The delivery machinery in one process: poison entries, dead letters, NOGROUP, trimming, fencing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from sqlmodel import select

from marketplace.adapters.dead_letters import ResendFailed, dead_letter, list_dead_letters, replay
from marketplace.adapters.locks import FencedLock, FencedOut, check_fence, fence
from marketplace.adapters.orm import OfferRow, PartitionLeaseRow
from marketplace.services import intake
from marketplace.services.context import ServiceContext
from tests.factories import market_events
from tests.integration.harness import marketplace, publish_raw
from tests.reliability.checks import eventually
from tests.reliability.conftest import REPO, worker_env
from workers.consumer import StreamConsumer
from workers.groups import ensure_group
from workers.runtime import Runtime
from workers.trimming import trim_acknowledged

pytestmark = pytest.mark.integration


def _fast(settings):
    return settings.model_copy(update={"claim_idle_ms": 300, "claim_interval_ms": 100, "max_deliveries": 3,
                                       "batch_size": 50})


def _one_region(events, count: int) -> list:
    """`count` of `events` published by region 01: they go on its own ingress stream."""
    mine = [e for e in events if e.producer == "01"][:count]
    assert len(mine) == count
    return mine


async def _offers(database) -> set[str]:
    async with database.session() as session:
        return set((await session.exec(select(OfferRow.offer_id))).all())


async def test_a_poison_entry_is_dead_lettered_after_the_limit_and_holds_up_nothing(
        settings, database, redis_client):
    settings = _fast(settings)
    broken = {"on": True}

    async def handler(session: Any, items: Sequence[Any], ctx: ServiceContext) -> Any:
        # Stands for a handler bug: it cannot process this one event, however often it is delivered.
        if broken["on"] and any(b"corr-pzn" in (i if isinstance(i, bytes) else str(i).encode()) for i in items):
            raise RuntimeError("cannot process this event")
        return await intake.handle_batch(session, items, ctx)

    events = _one_region(market_events("poison", 400, requests_per_offer=0), 10)  # ten offers of region 01
    poison = events[4].model_copy(update={"correlation_id": "corr-pzn"})
    runtime = Runtime.create(settings, settings.redis_url or "", db=database)
    await runtime.connect()
    stream = runtime.streams.ingress("01")
    await ensure_group(runtime.redis, stream, "intake")
    consumer = StreamConsumer(runtime, stream, "intake", handler)
    await publish_raw(redis_client, stream, [*events[:4], poison, *events[5:]])
    consumer.start()
    try:
        wanted = {e.payload["offer_id"] for e in events} - {poison.payload["offer_id"]}
        # The nine others go through at once, in the reader's own pass (the batch is split).
        await eventually(lambda: _has(database, wanted), 10, "the entries around the poison one")
        await eventually(lambda: _dead(redis_client, runtime.streams.dead_letter), 15, "the dead letter")
        (letter,) = await list_dead_letters(redis_client, runtime.streams.dead_letter)
        assert letter.stream == stream and letter.group == "intake"
        assert letter.deliveries == 3 and letter.reason == "RuntimeError: cannot process this event"
        assert json.loads(letter.body)["event_id"] == str(poison.event_id)
        assert (await redis_client.xpending(stream, "intake"))["pending"] == 0
        assert await _offers(database) == wanted

        # The operator lists it and, once the bug is fixed, replays it: processed once.
        env = worker_env(settings)
        # In a thread: a blocking call would stall the consumer's own reads (their socket times out).
        listed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "marketplace.entrypoints.cli", "dlq", "list", "--json"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert letter.id in listed.stdout and "cannot process" in listed.stdout
        broken["on"] = False
        replayed = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "marketplace.entrypoints.cli", "dlq", "replay", "--all"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        await eventually(lambda: _has(database, wanted | {poison.payload["offer_id"]}), 10, "the replayed entry")
        assert await list_dead_letters(redis_client, runtime.streams.dead_letter) == []
    finally:
        await consumer.stop()
        await runtime.broker.stop()


async def _has(database, wanted: set[str]) -> bool:
    return wanted <= await _offers(database)


async def _dead(redis, stream: str) -> bool:
    return bool(await redis.xlen(stream))


async def test_an_infrastructure_failure_is_never_dead_lettered(settings, database, redis_client):
    settings = _fast(settings)
    failures = {"left": 6}

    async def handler(session: Any, items: Sequence[Any], ctx: ServiceContext) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database unreachable")
        return await intake.handle_batch(session, items, ctx)

    events = list(market_events("outage", 3, requests_per_offer=0))
    runtime = Runtime.create(settings, settings.redis_url or "", db=database)
    await runtime.connect()
    stream = runtime.streams.ingress("01")
    await ensure_group(runtime.redis, stream, "intake")
    consumer = StreamConsumer(runtime, stream, "intake", handler)
    await publish_raw(redis_client, stream, events)
    consumer.start()
    try:
        await eventually(lambda: _has(database, {e.payload["offer_id"] for e in events}), 20, "recovery")
        assert await redis_client.xlen(runtime.streams.dead_letter) == 0
    finally:
        await consumer.stop()
        await runtime.broker.stop()


async def test_a_deleted_consumer_group_is_recreated_and_work_goes_on(settings, database, redis_client):
    events = _one_region(market_events("nogroup", 400, requests_per_offer=0), 6)
    async with marketplace(settings, database, roles=("intake",)) as runtime:
        stream = runtime.streams.ingress("01")
        await publish_raw(runtime.redis, stream, events[:3])
        await eventually(lambda: _has(database, {e.payload["offer_id"] for e in events[:3]}), 10, "first offers")
        await runtime.redis.xgroup_destroy(stream, "intake")  # NOGROUP for the reader
        await publish_raw(runtime.redis, stream, events[3:])
        await eventually(lambda: _has(database, {e.payload["offer_id"] for e in events}), 15, "the rest")
        # The group came back at the start of the stream: the first three were read again, to no effect.
        assert len(await _offers(database)) == 6


async def test_a_dead_letter_whose_resend_fails_stays_a_dead_letter(settings, redis_client):
    dlq = f"{settings.stream_prefix}:dead-letters-test"
    good, broken = f"{settings.stream_prefix}:resend-ok", f"{settings.stream_prefix}:resend-broken"
    for stream, body in ((good, b'{"n": 1}'), (broken, b'{"n": 2}')):
        await dead_letter(redis_client, dlq, stream=stream, group="g", entry_id="1-0", body=body,
                          reason="test", deliveries=5, consumer="c")
    # The broken stream's key now holds a string, so the XADD of its resend fails (WRONGTYPE).
    await redis_client.set(broken, "not a stream")
    with pytest.raises(ResendFailed) as failed:
        await replay(redis_client, dlq)
    assert [d.stream for d in failed.value.resent] == [good]
    left = await list_dead_letters(redis_client, dlq)
    assert [d.stream for d in left] == [broken]
    assert [f[b"__data__"] for _, f in await redis_client.xrange(good)] == [b'{"n": 1}']
    await redis_client.delete(dlq, good, broken)


async def test_trimming_never_drops_an_unacknowledged_entry(settings, redis_client):
    stream = f"{settings.stream_prefix}:trim"
    ids = [await redis_client.xadd(stream, {"__data__": str(i)}) for i in range(300)]
    for group in ("a", "b"):
        await redis_client.xgroup_create(stream, group, id="0")
    # Group a read everything and acked all but entry 120; group b has read only 200 entries.
    await redis_client.xreadgroup("a", "c", {stream: ">"}, count=300)
    await redis_client.xack(stream, "a", *[i for n, i in enumerate(ids) if n != 120])
    await redis_client.xreadgroup("b", "c", {stream: ">"}, count=200)
    await redis_client.xack(stream, "b", *ids[:200])
    # A group expected but missing: nothing is trimmed.
    assert await trim_acknowledged(redis_client, [(stream, "a"), (stream, "b"), (stream, "z")]) == {}
    await trim_acknowledged(redis_client, [(stream, "a"), (stream, "b")])
    left = [eid for eid, _ in await redis_client.xrange(stream)]
    assert ids[120] in left and set(ids[120:]) <= set(left)
    # Once acked, entries below group b's position may go.
    await redis_client.xack(stream, "a", ids[120])
    await redis_client.xadd(stream, {"__data__": "more"})
    await trim_acknowledged(redis_client, [(stream, "a"), (stream, "b")])
    left = [eid for eid, _ in await redis_client.xrange(stream)]
    assert set(ids[199:]) <= set(left)


async def test_a_stale_lock_holder_is_fenced_out_by_the_database(settings, database, redis_client):
    prefix, partition = settings.stream_prefix, f"{settings.stream_prefix}:book:cataract"
    old = FencedLock.for_partition(redis_client, prefix, partition, "old", ttl_ms=200)
    new = FencedLock.for_partition(redis_client, prefix, partition, "new", ttl_ms=5000)
    t_old = await old.acquire()
    assert t_old is not None and await new.acquire() is None  # held
    async with database.session() as session:
        await fence(session, partition, t_old, "old")
        await session.commit()
    await asyncio.sleep(0.3)  # the old holder "paused" past its TTL
    t_new = await new.acquire()
    assert t_new is not None and t_new > t_old
    assert not await old.renew()
    async with database.session() as session:
        await fence(session, partition, t_new, "new")
        await session.commit()
    async with database.session() as session:
        with pytest.raises(FencedOut):
            await fence(session, partition, t_old, "old")
        await session.rollback()
    # A holder that only reads the partition's entries is told too, without writing anything.
    async with database.session() as session:
        await check_fence(session, partition, t_new)
        with pytest.raises(FencedOut):
            await check_fence(session, partition, t_old)
    # Redis forgot the counter (restarted empty): the database's highest token is the floor.
    await redis_client.delete(new.key, new.counter_key)
    again = FencedLock.for_partition(redis_client, prefix, partition, "again", ttl_ms=5000)
    async with database.session() as session:
        row = await session.get(PartitionLeaseRow, partition)
    assert row is not None
    assert (await again.acquire(floor=row.token) or 0) > t_new
