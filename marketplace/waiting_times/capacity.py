"""The units' free-capacity feed: an estimated wait as a band in weeks, and free capacity yes/no.

Shaped like the old unit-level feed of Väntetider i vården (unit, region, "9 - 13 veckor", free
capacity yes/no, updated date). Here it comes from what a unit offers on the marketplace: a unit
with an open offer that has places left and whose window has not ended has free capacity, and a
new patient would be seen between the start and the end of the earliest such window. A report not
updated for more than six weeks is stale (as SKR marks units' capacity reports); a unit or region
with no report at all is "no data", never "no capacity".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

STALE_AFTER = timedelta(weeks=6)


@dataclass(frozen=True, slots=True)
class Window:
    """One open offer's slot window and the places it has left."""

    offer_id: str
    start: date
    end: date
    places: int


@dataclass(frozen=True, slots=True)
class WaitBand:
    min_weeks: int
    max_weeks: int

    def __str__(self) -> str:
        return f"{self.min_weeks} - {self.max_weeks} veckor"


def band(window: Window, today: date) -> WaitBand:
    """Weeks from `today` to the window's start (rounded down) and to its end (rounded up)."""
    low = max(0, (window.start - today).days // 7)
    high = max(low, math.ceil((window.end - today).days / 7))
    return WaitBand(low, high)


@dataclass(frozen=True, slots=True)
class UnitReport:
    free_capacity: bool
    band: WaitBand | None
    places: int
    updated_on: date
    stale: bool


def is_stale(updated_on: date, today: date) -> bool:
    """More than six weeks (42 days) since the report was updated."""
    return today - updated_on > STALE_AFTER


def report(windows: Iterable[Window], *, updated_on: date, today: date) -> UnitReport:
    usable = sorted((w for w in windows if w.places > 0 and w.end >= today), key=lambda w: (w.start, w.end))
    return UnitReport(
        free_capacity=bool(usable),
        band=band(usable[0], today) if usable else None,
        places=sum(w.places for w in usable),
        updated_on=updated_on,
        stale=is_stale(updated_on, today),
    )
