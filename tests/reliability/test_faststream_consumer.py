"""The consumer's FastStream subscribers: one behaviour, run by the in-memory TestRedisBroker and by Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from faststream.redis import TestRedisBroker
from sqlmodel import select

from marketplace.adapters.orm import OfferRow
from marketplace.services import intake
from marketplace.services.context import ServiceContext
from tests.factories import market_events
from tests.reliability.checks import eventually
from workers.consumer import StreamConsumer
from workers.groups import ensure_group
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

Publish = Callable[[str], Awaitable[Any]]


async def _offers(database) -> list[str]:
    async with database.session() as session:
        return list((await session.exec(select(OfferRow.offer_id))).all())


def _fast(settings):
    return settings.model_copy(update={"claim_idle_ms": 300, "claim_interval_ms": 100, "max_deliveries": 3,
                                       "batch_size": 50})


class Attempts:
    """The handler under test: intake's, except that it cannot process an event marked POISON."""

    def __init__(self) -> None:
        self.poison = 0

    async def __call__(self, session: Any, items: Sequence[Any], ctx: ServiceContext) -> Any:
        if any(b"POISON" in (i if isinstance(i, bytes) else str(i).encode()) for i in items):
            self.poison += 1
            raise RuntimeError("cannot process this event")
        return await intake.handle_batch(session, items, ctx)


@pytest.fixture(params=["in-memory", "redis"])
async def consuming(request, settings, database) -> AsyncIterator[tuple[Publish, Attempts]]:
    """A consumer of the intake stream; `publish` goes through the broker, in memory or to Redis."""
    settings = _fast(settings)
    runtime = Runtime.create(settings, settings.redis_url or "", db=database)
    stream, handler = runtime.streams.ingress("01"), Attempts()
    consumer = StreamConsumer(runtime, stream, "intake", handler)

    async def publish(body: str) -> Any:
        return await runtime.broker.publish(body, stream=stream)

    if request.param == "in-memory":
        consumer.declare()  # FastStream's test broker runs the subscribers declared before it starts
        async with TestRedisBroker(runtime.broker):
            yield publish, handler
        return
    await runtime.connect()
    await ensure_group(runtime.redis, stream, "intake")
    consumer.start()
    try:
        yield publish, handler
    finally:
        await consumer.stop()
        await runtime.broker.stop()


async def test_each_event_has_its_effect_once_and_a_failing_one_holds_up_nothing(consuming, database):
    publish, handler = consuming
    events = list(market_events("fs", 4, requests_per_offer=0))  # four offers
    poison = events[1].model_copy(update={"correlation_id": "POISON"})
    for event in [events[0], poison, *events[2:], events[0]]:  # poison in the middle, a duplicate last
        await publish(event.to_json())
    wanted = sorted(e.payload["offer_id"] for e in events if e is not events[1])

    async def stored() -> bool:
        return sorted(await _offers(database)) == wanted

    await eventually(stored, 15, "the offers around the failing one")
    await asyncio.sleep(0.2)
    assert sorted(await _offers(database)) == wanted  # the duplicate had no second effect
    assert handler.poison >= 1


async def test_an_entry_deleted_while_pending_is_acknowledged_by_the_claimer(settings, database, redis_client):
    """Redis 7 drops a deleted entry's id from the pending list when XAUTOCLAIM meets it."""
    version = (await redis_client.info("server"))["redis_version"]
    if int(version.split(".")[0]) < 7:
        pytest.skip(f"Redis {version}: XAUTOCLAIM returns a nil entry without its id, which FastStream's "
                    "claimer cannot read (StreamSubscriber._get_msgs: msgs[-1][0].decode())")
    settings = _fast(settings)
    runtime = Runtime.create(settings, settings.redis_url or "", db=database)
    await runtime.connect()
    stream = runtime.streams.ingress("01")
    await ensure_group(runtime.redis, stream, "intake")
    (event,) = market_events("gone", 1, requests_per_offer=0)
    entry_id = await redis_client.xadd(stream, {"__data__": event.to_json()})
    await redis_client.xreadgroup("intake", "died", {stream: ">"}, count=1)  # pending with a dead consumer
    await redis_client.xdel(stream, entry_id)
    consumer = StreamConsumer(runtime, stream, "intake", Attempts())
    consumer.start()
    try:
        async def nothing_pending() -> bool:
            return (await redis_client.xpending(stream, "intake"))["pending"] == 0

        await eventually(nothing_pending, 10, "the deleted entry to leave the pending list")
        assert consumer.running
        assert await _offers(database) == []
    finally:
        await consumer.stop()
        await runtime.broker.stop()
    assert not consumer.running and consumer.subscribers == []
