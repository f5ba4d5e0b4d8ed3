"""Stopping background tasks: a loop that is stopped while it stops a task of its own stops too."""

from __future__ import annotations

import asyncio

import pytest

from marketplace.adapters.outbox import OutboxRelay
from workers.tasks import cancel_and_wait

GUARD_S = 30  # a guard against a hang, not a speed limit


async def test_a_loop_stopped_while_it_stops_a_task_of_its_own_ends() -> None:
    release, stopping = asyncio.Event(), asyncio.Event()

    async def helper() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # unwinding takes a while (a consumer finishing its batch)

    async def loop() -> None:
        while True:  # a partition loop: balance, which lets a consumer go, then sleep
            task = asyncio.create_task(helper())
            await asyncio.sleep(0)
            stopping.set()
            await cancel_and_wait(task)
            await asyncio.sleep(0.01)

    outer = asyncio.create_task(loop())
    await stopping.wait()
    outer.cancel()  # whoever stops the loop, while it waits for its helper
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(outer, GUARD_S)
    assert outer.cancelled()


async def test_an_error_a_task_ended_with_is_raised_and_the_others_are_still_stopped() -> None:
    async def failing() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("failed while stopping")

    async def idle() -> None:
        await asyncio.Event().wait()

    first, second = asyncio.create_task(failing()), asyncio.create_task(idle())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="failed while stopping"):
        await cancel_and_wait(first, None, second)
    assert second.cancelled()


@pytest.mark.integration
async def test_the_outbox_relay_stops_when_cancelled_just_as_it_is_poked(database, redis_client) -> None:
    """A relay poked in the same moment it is cancelled stops. Its loop used to wait with
    `asyncio.wait_for`, which on Python 3.11 returns normally when cancelled as its event is set
    (CPython gh-86296): the loop ran on and a worker's shutdown waited for it forever."""
    relay = OutboxRelay(database, redis_client)
    for spins in range(8):  # the cancel lands at each step of the relay's wake-up in turn
        for _ in range(3):
            task = asyncio.create_task(relay.run(interval_s=60))
            await asyncio.sleep(0)
            relay.poke()
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=GUARD_S)
            assert task in done, f"the relay ran on after a cancel {spins} steps after its poke"
