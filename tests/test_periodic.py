"""Periodic jobs run on APScheduler: again and again, a failure does not end the schedule, stop ends it."""

from __future__ import annotations

import asyncio

from marketplace.adapters.periodic import Periodic


async def test_a_job_runs_again_after_failing_and_not_after_stop() -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) >= 3:
            third.set()
        if len(runs) == 1:
            raise RuntimeError("the first run fails")

    periodic = Periodic("test-job", 0.01, job)
    periodic.start()
    await asyncio.wait_for(third.wait(), timeout=30)
    periodic.stop()
    seen = len(runs)
    # Another job on a fresh schedule runs; this one, stopped, does not.
    other = asyncio.Event()

    async def marker() -> None:
        other.set()

    probe = Periodic("probe", 0.02, marker)
    probe.start()
    await asyncio.wait_for(other.wait(), timeout=30)
    probe.stop()
    assert seen >= 3 and len(runs) == seen
