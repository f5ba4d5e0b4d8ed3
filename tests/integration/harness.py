"""Driving the real workers from a test: publish as regions would, wait for the market to settle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from events import Envelope
from marketplace.adapters.database import Database
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.entrypoints.progress import wait_until_settled
from marketplace.settings import Settings
from workers.app import ROLES, running, stream_groups
from workers.runtime import Runtime


async def publish_raw(redis: Any, stream: str, items: list[Envelope | bytes | str | dict[str, Any]]) -> None:
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


@asynccontextmanager
async def marketplace(settings: Settings, db: Database, roles: tuple[str, ...] = ROLES) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(settings, settings.redis_url or "", db=db)
    async with running(runtime, roles):
        yield runtime


async def settle(runtime: Runtime, round_ids: list[str] | None = None, timeout_s: float = 120) -> None:
    pairs = stream_groups(runtime, ROLES)
    await wait_until_settled(runtime.redis, runtime.db, pairs, round_ids or [], timeout_s=timeout_s)
