"""Driving the real workers from a test: publish as regions would, wait for the market to settle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from events import Envelope, Streams
from marketplace.adapters.database import Database
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.redis_users import Credential, apply, provision
from marketplace.entrypoints.progress import wait_until_settled
from marketplace.parties import all_parties, ingress_parties
from marketplace.settings import Settings
from workers.app import ROLES, running, stream_groups
from workers.runtime import Runtime


async def publish_raw(redis: Any, stream: str, items: Sequence[Envelope | bytes | str | dict[str, Any]]) -> None:
    """XADD each item as a region's own client would: an envelope, or any bytes it chose to send."""
    async with redis.pipeline(transaction=False) as pipe:
        for item in items:
            if isinstance(item, Envelope):
                body: bytes | str = item.to_json()
            elif isinstance(item, dict):
                body = json.dumps(item)
            else:
                body = item
            pipe.xadd(stream, {DATA_FIELD: body})
        await pipe.execute()


def producer_of(item: Envelope | bytes | str | dict[str, Any]) -> str | None:
    """The producer an item claims, if it is readable at all."""
    if isinstance(item, Envelope):
        return item.producer
    try:
        data = item if isinstance(item, dict) else json.loads(item)
    except ValueError:
        return None
    producer = data.get("producer") if isinstance(data, dict) else None
    return producer if isinstance(producer, str) else None


async def publish_events(redis: Any, streams: Streams, items: Sequence[Envelope | bytes | str | dict[str, Any]],
                         *, default: str = "01") -> None:
    """Each item on the ingress stream of the party it names (as that party's own system would send
    it), or of `default` when it names none we know; in order per stream."""
    known = set(ingress_parties())
    for item in items:
        party = producer_of(item)
        await publish_raw(redis, streams.ingress(party if party in known else default), [item])


@asynccontextmanager
async def marketplace(settings: Settings, db: Database, roles: tuple[str, ...] = ROLES, *,
                      access: bool = False) -> AsyncIterator[Runtime]:
    """The workers of `roles` in this process. With `access`, the parties' users are applied (the
    test's `redis_client` fixture deletes them) and each role connects as its own."""
    credentials = await apply_access(settings) if access else None
    runtime = Runtime.create(settings, settings.redis_url or "", db=db, credentials=credentials)
    async with running(runtime, roles):
        yield runtime


async def apply_access(settings: Settings) -> dict[str, Credential]:
    """Every party's user on the test's Redis, under the test's prefix (passwords in its state dir)."""
    import redis.asyncio as aioredis

    credentials = provision(settings.state_dir, settings.stream_prefix, all_parties())
    admin = aioredis.from_url(settings.redis_url or "")
    try:
        await apply(admin, Streams(settings.stream_prefix), credentials)
    finally:
        await admin.aclose()
    return credentials


async def settle(runtime: Runtime, round_ids: list[str] | None = None, timeout_s: float = 120) -> None:
    pairs = stream_groups(runtime, ROLES)
    await wait_until_settled(runtime.redis, runtime.db, pairs, round_ids or [], timeout_s=timeout_s)
