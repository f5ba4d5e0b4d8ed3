"""Faults survived by real `nvf run` processes on a real Redis and a real database.

Each test runs the workers as subprocesses against the test's own stream prefix and schema (or
SQLite file, WAL), so SIGKILL, SIGSTOP and a Redis restart hit them as they would in production.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from sqlmodel import select

from events import Streams
from marketplace.adapters.orm import MatchRow, PartitionLeaseRow
from marketplace.adapters.redis_users import prepare_access
from tests.factories import market_events
from tests.integration.harness import publish_events
from tests.reliability.checks import assert_exactly_once, describe, eventually, expected_cases, settled
from tests.reliability.conftest import worker_env
from workers.app import ROLES, stream_groups
from workers.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ALL = list(ROLES)


def _pairs(settings, database) -> list[tuple[str, str]]:
    return stream_groups(Runtime.create(settings, settings.redis_url or "", db=database), ROLES)


async def _count(database, model) -> int:
    async with database.session() as session:
        return len((await session.exec(select(model))).all())


async def test_sigkill_mid_batch_then_restart_every_event_has_its_effect_once(
        settings, database, redis_client, workers):
    env = worker_env(settings, NVF_BATCH_SIZE="10", NVF_AUTO_CLEAR_MS="30")
    events = list(market_events("kill", 150))
    refs = expected_cases(events)
    await publish_events(redis_client, Streams(settings.stream_prefix), events)

    workers.start("w1", ALL, env)
    await eventually(lambda: _some_matches(database, 5), 60, "the first matches")
    workers.kill("w1")  # SIGKILL: batches in hand are neither committed nor acked
    # The same events again (a region's retry): they must have no second effect.
    await publish_events(redis_client, Streams(settings.stream_prefix), events[:40])
    workers.start("w2", ALL, env)
    await eventually(lambda: _some_matches(database, 40), 60, "more matches")
    workers.kill("w2")
    workers.start("w3", ALL, env)
    pairs = _pairs(settings, database)
    await eventually(lambda: settled(database, redis_client, pairs, refs), 120, "the market to settle",
                     lambda: describe(database, redis_client, pairs))

    await assert_exactly_once(database, events)


async def _some_matches(database, n: int) -> bool:
    return await _count(database, MatchRow) >= n


async def test_the_same_event_published_twice_has_one_effect(settings, database, redis_client, workers):
    env = worker_env(settings, NVF_AUTO_CLEAR_MS="30")
    events = list(market_events("twice", 25))
    refs = expected_cases(events)
    workers.start("w1", ALL, env)
    pairs = _pairs(settings, database)
    await publish_events(redis_client, Streams(settings.stream_prefix), events + events)
    await eventually(lambda: settled(database, redis_client, pairs, refs), 60, "the market to settle",
                     lambda: describe(database, redis_client, pairs))
    # Once more, long after the first copies were processed (and possibly trimmed away).
    await publish_events(redis_client, Streams(settings.stream_prefix), events)
    await asyncio.sleep(1.0)
    await eventually(lambda: settled(database, redis_client, pairs, refs), 60, "the market to settle again",
                     lambda: describe(database, redis_client, pairs))
    await assert_exactly_once(database, events)


async def test_redis_restart_with_aof_workers_reconnect_and_nothing_is_lost(
        settings, database, own_redis, workers):
    import redis.asyncio as aioredis

    settings = settings.model_copy(update={"redis_url": own_redis.url})
    env = worker_env(settings, NVF_AUTO_CLEAR_MS="30")
    events = list(market_events("restart", 100))
    refs = expected_cases(events)
    workers.start("w1", ALL, env)
    client = aioredis.from_url(own_redis.url)
    try:
        await eventually(lambda: _exists(client, settings.stream_prefix + ":ingress:01"), 30, "workers to start")
        await publish_events(client, Streams(settings.stream_prefix), events[:50])
        await eventually(lambda: _some_matches(database, 5), 60, "the first matches")
    finally:
        await client.aclose()
    own_redis.kill()  # mid-run; every acknowledged write is in the AOF (appendfsync always)
    await asyncio.sleep(1.0)
    own_redis.start()
    # ACL users are not in the AOF: the administrator applies them again (`nvf access apply`), and
    # the workers, which kept retrying their authentication, get back in.
    await prepare_access(settings, own_redis.url)
    client = aioredis.from_url(own_redis.url)
    try:
        await publish_events(client, Streams(settings.stream_prefix), events[50:])
        pairs = _pairs(settings, database)
        await eventually(lambda: settled(database, client, pairs, refs), 120, "the market to settle",
                     lambda: describe(database, client, pairs))
        assert workers.procs["w1"].poll() is None, "the worker died instead of reconnecting"
    finally:
        await client.aclose()
    await assert_exactly_once(database, events)


async def _exists(client, key: str) -> bool:
    return bool(await client.exists(key))


async def _holders(redis, prefix: str) -> dict[str, str]:
    """partition stream -> matcher holding its lock."""
    out = {}
    async for key in redis.scan_iter(match=f"{prefix}:lock:*:book:*"):
        value = await redis.get(key)
        if value:
            out[key.decode().split(":lock:", 1)[1]] = value.decode().split("#")[0]
    return out


async def test_two_matchers_divide_the_partitions_and_never_allocate_a_slot_twice(
        settings, database, redis_client, workers):
    env = worker_env(settings, NVF_AUTO_CLEAR_MS="30")
    prefix = settings.stream_prefix
    workers.start("rest", ["intake", "notifier", "timeline"], env)
    workers.start("m1", ["matcher"], env)
    workers.start("m2", ["matcher"], env)

    async def divided() -> bool:
        holders = await _holders(redis_client, prefix)
        return len(holders) == 3 and set(holders.values()) == {"m1", "m2"}

    await eventually(divided, 30, "the two matchers to divide the three partitions")
    events = list(market_events("two", 120))
    refs = expected_cases(events)
    await publish_events(redis_client, Streams(prefix), events[:60])
    await eventually(lambda: _some_matches(database, 10), 60, "the first matches")

    # Freeze the holder of the cataract partition past its lock's TTL: the other matcher takes
    # over; when the frozen one wakes up, its writes carry a stale token and are refused.
    cataract = f"{prefix}:book:cataract"
    frozen = (await _holders(redis_client, prefix))[cataract]
    other = "m2" if frozen == "m1" else "m1"
    workers.procs[frozen].send_signal(signal.SIGSTOP)
    await publish_events(redis_client, Streams(prefix), events[60:])

    async def taken_over() -> bool:
        return (await _holders(redis_client, prefix)).get(cataract) == other

    await eventually(taken_over, 30, f"{other} to take over {cataract}")
    workers.procs[frozen].send_signal(signal.SIGCONT)
    pairs = _pairs(settings, database)
    await eventually(lambda: settled(database, redis_client, pairs, refs), 120, "the market to settle",
                     lambda: describe(database, redis_client, pairs))
    await assert_exactly_once(database, events)

    async def newer_token_written() -> bool:
        async with database.session() as session:
            lease = await session.get(PartitionLeaseRow, cataract)
        return lease is not None and lease.token >= 2

    # The takeover wrote a newer token (when it took the partition: the lock in Redis is visible a
    # moment before); the frozen matcher noticed it had lost the partition (its renewal failed, or
    # a read or write of its batch was refused) instead of writing on.
    await eventually(newer_token_written, 10, "the new holder's token in the database")
    log = workers.log(frozen)
    assert '"why": "lock lost"' in log or "worker.fenced_out" in log or "auto_clear.fenced_out" in log
