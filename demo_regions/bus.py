"""Sending as a region: entries on the streams a region may append to, as its own Redis user."""

from __future__ import annotations

from typing import Any, Protocol

from events import Payload, new_envelope
from events.envelope import DATA_FIELD, stable_event_id

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
