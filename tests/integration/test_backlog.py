"""The "settled" check counts what a consumer group has not yet read or acknowledged, from the stream
itself where Redis reports no lag (6.2, the embedded one) or a nil lag (7, after deletions)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from marketplace.entrypoints.progress import stream_backlog
from marketplace.settings import Settings

pytestmark = pytest.mark.integration


async def test_backlog_counts_unread_and_unacked_entries_and_survives_deletions(settings: Settings,
                                                                                redis_client: Any) -> None:
    stream, group = f"{settings.stream_prefix}:backlog", "readers"
    ids = [await redis_client.xadd(stream, {"n": str(n)}) for n in range(4)]
    await redis_client.xgroup_create(stream, group, id="0")
    assert await stream_backlog(redis_client, [(stream, group)]) > 0

    # One read and acknowledged, one read and still pending, two never delivered.
    read = await redis_client.xreadgroup(group, "c1", {stream: ">"}, count=2)
    first = read[0][1][0][0]
    await redis_client.xack(stream, group, first)
    assert await stream_backlog(redis_client, [(stream, group)]) >= 2
    # Deleting an undelivered entry makes Redis 7's lag nil; the backlog is still seen.
    await redis_client.xdel(stream, ids[2])
    assert await stream_backlog(redis_client, [(stream, group)]) > 0

    rest = await redis_client.xreadgroup(group, "c1", {stream: ">"})
    for _, entries in rest:
        for entry_id, _fields in entries:
            await redis_client.xack(stream, group, entry_id)
    await redis_client.xack(stream, group, read[0][1][1][0])
    assert await stream_backlog(redis_client, [(stream, group)]) == 0
    # A stream nobody wrote to holds nothing.
    assert await stream_backlog(redis_client, [(f"{settings.stream_prefix}:never", group)]) == 0


async def test_an_unreachable_redis_is_an_error_not_an_empty_backlog() -> None:
    nowhere = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with pytest.raises(RedisConnectionError):
        await stream_backlog(nowhere, [("any", "group")])
    await nowhere.aclose()
