"""The clearing policies a replay compares: when a round runs, and which solver it runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from marketplace.replay.stream import day_start
from matchers.clearing import Policy

Cadence = Literal["continuous", "daily", "weekly", "monthly", "recorded"]
BATCH_HOUR = 7  # a batch round runs at 07:00 Swedish time, before the working day


@dataclass(frozen=True)
class ClearingPolicy:
    name: str
    cadence: Cadence
    solver: Policy
    description: str

    def rounds(self, start: date, end: date) -> Iterator[datetime]:
        """The moments of the batch rounds from `start` to `end` (none for continuous/recorded)."""
        day = start
        while day <= end:
            if (self.cadence == "daily" or (self.cadence == "weekly" and day.isoweekday() == 1)
                    or (self.cadence == "monthly" and day.day == 1)):
                yield day_start(day, BATCH_HOUR)
            day += timedelta(days=1)


POLICIES: dict[str, ClearingPolicy] = {p.name: p for p in (
    ClearingPolicy("continuous", "continuous", "optimal", "continuous optimal: a round on every change"),
    ClearingPolicy("fcfs", "continuous", "greedy", "continuous first come, first served"),
    ClearingPolicy("daily", "daily", "optimal", "optimal in daily batches (07:00)"),
    ClearingPolicy("weekly", "weekly", "optimal", "optimal in weekly batches (Monday 07:00)"),
    ClearingPolicy("monthly", "monthly", "optimal", "optimal in monthly batches (the 1st, 07:00)"),
    ClearingPolicy("recorded", "recorded", "optimal", "the rounds a recorded log ran, with their policies"),
)}
ONLINE = ("continuous", "fcfs", "daily", "weekly", "monthly")
