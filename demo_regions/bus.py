"""A region on the bus: sending entries on the streams it may append to, as its own Redis user, and
following the streams it reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from events import Payload, new_envelope
from events.envelope import DATA_FIELD, stable_event_id

log = structlog.get_logger(__name__)

Outgoing = tuple[str, Payload, tuple[object, ...]]
"""(stream, payload, the parts its stable event id is made of)."""


class Connections(Protocol):
    """Each party's own Redis connection (made as its own user where the Redis has them)."""

    def client(self, party: str) -> Any: ...


async def send(connections: Connections, producer: str, items: list[Outgoing]) -> None:
    """`items` sent as `producer`, pipelined in one round trip."""
    if not items:
        return
    async with connections.client(producer).pipeline(transaction=False) as pipe:
        for stream, payload, key in items:
            envelope = new_envelope(payload, producer=producer, event_id=stable_event_id("demo-party", *key))
            pipe.xadd(stream, {DATA_FIELD: envelope.to_json()})
        await pipe.execute()


def text_id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def keep_reading(step: Callable[[], Awaitable[object]], stopping: asyncio.Event, failed: str,
                       **ids: str) -> None:
    """Take `step` (a blocking read and what follows it) again and again until `stopping` is set. A
    step that fails is logged as `failed` and taken again half a second later: a region's reader
    outlives a bad moment of its connection."""
    while not stopping.is_set():
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failed, **ids)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):  # not wait_for: see marketplace/adapters/outbox.py
                    await stopping.wait()
