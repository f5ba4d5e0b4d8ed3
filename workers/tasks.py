"""Stopping the background tasks a worker runs beside its consumers."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the tasks and wait until each has finished unwinding (its `finally` blocks ran); an
    error one of them ended with is raised here.

    A cancellation of the caller itself goes through: `await task` would raise the task's own
    cancellation and the caller's alike, and swallowing both left a caller that was being stopped
    (a matcher's partition loop letting go of a partition) running on, and whoever stopped it
    waiting forever."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
    for task in running:
        if not task.cancelled():
            task.result()
