"""Per-client request rate (moving window, the `limits` library): past it, 429 with Retry-After.

The counters live in this process's memory: each `nvf serve` process enforces the rate on what it
serves (a client spread over N processes behind a balancer may get up to N times the rate).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


class ClientRate:
    def __init__(self, rate: str) -> None:
        self.item: RateLimitItem = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def take(self, client_id: str) -> int | None:
        """None if `client_id` may go on; else the seconds until it may (for Retry-After)."""
        if await self._limiter.hit(self.item, client_id):
            return None
        stats = await self._limiter.get_window_stats(self.item, client_id)
        return max(1, math.ceil(stats.reset_time - time.time()))
