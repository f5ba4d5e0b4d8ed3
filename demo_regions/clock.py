"""The demo's simulated clock: a campaign of months played in a minute.

`nvf demo` installs one as the runtime's clock (`ServiceContext.clock`), so every event, timeline
entry, deadline and receipt of the run is stamped in simulated time. It starts on the campaign's
clearing date, on a working-day morning Swedish time, and moves only when the demo's parties move
it (to the moment of their next action); it never goes back, so the timelines stay in order.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from marketplace.lifecycle.swedish_time import SWEDISH_TIME

MORNING = time(8, 0)


def working_morning(day: date, at: time = MORNING) -> datetime:
    """`at` Swedish time on `day`, or on the Monday after if `day` is a Saturday or Sunday (UTC)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime.combine(day, at, tzinfo=SWEDISH_TIME).astimezone(UTC)


class SimulatedClock:
    """A callable returning the simulated now (aware, UTC), moved forward by hand."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs an aware start time")
        self._now = start.astimezone(UTC)
        self.start = self._now

    @classmethod
    def campaign(cls, clearing_date: date) -> SimulatedClock:
        return cls(working_morning(clearing_date))

    def __call__(self) -> datetime:
        return self._now

    def advance_to(self, moment: datetime) -> datetime:
        """Move to `moment` if it is later than now (a moment already passed leaves the clock as it is)."""
        moment = moment.astimezone(UTC)
        if moment > self._now:
            self._now = moment
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the simulated clock does not go back")
        return self.advance_to(self._now + delta)
