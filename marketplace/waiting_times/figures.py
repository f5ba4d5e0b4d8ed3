"""Waiting-time figures (lägesbild): one month's aggregate for a region, care area and status.

Pure rules, no I/O. The figures follow what Socialstyrelsen's "Väntetider i vården" publishes for
operations (decision to operate, point D, to start of treatment, point E; guarantee 90 days):

- `waiting`: patients still waiting on the last day of the month, by how long they have waited;
- `completed`: patients operated during the month, by how long they waited (mean only here).

Small numbers are not shown: a cell counting fewer than 5 patients is suppressed (as SKR and the
regional cancer centres do), and a suppressed cell carries no figures at all, not even a count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

BUCKETS: tuple[str, ...] = ("0-30", "31-60", "61-90", "91-120", "121-180", "181-365", "366+")
GUARANTEE_DAYS = 90
SUPPRESS_BELOW = 5
# Data before 2021 was collected differently and is not comparable (Socialstyrelsen's own note).
FIRST_COMPARABLE_YEAR = 2021
MAX_COUNT = 10_000_000
MAX_DAYS = 36_500
# Regions report the previous month by the 20th; Socialstyrelsen publishes around the 25th.
PUBLICATION_DAY = 25
STALE_AFTER = timedelta(weeks=6)
TREND_MONTHS = 13

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


class Status(StrEnum):
    WAITING = "waiting"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A calendar month, `YYYY-MM`."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.match(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not a month as YYYY-MM")
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError(f"{text!r}: month {month} is not 01..12")
        return cls(year, month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def plus(self, months: int) -> Period:
        index = self.year * 12 + self.month - 1 + months
        return Period(index // 12, index % 12 + 1)

    def published_on(self) -> date:
        """The day this month's figures are expected to be public: the 25th of the following month."""
        following = self.plus(1)
        return date(following.year, following.month, PUBLICATION_DAY)


def latest_published(today: date) -> Period:
    """The newest month whose figures are due to be public on `today`."""
    last_month = Period(today.year, today.month).plus(-1)
    return last_month if today >= last_month.published_on() else last_month.plus(-1)


def stale_from(period: Period) -> date:
    """The first day on which figures whose newest month is `period` count as stale.

    Figures are as old as the time since their month was due to be published; they are stale once
    that is more than six weeks (42 days): the next month's figures, due a month later, are then
    more than about 11 days late. So figures for 2026-09 (due 2026-10-25) are fresh up to and
    including 2026-12-06 and stale from 2026-12-07.
    """
    return period.published_on() + STALE_AFTER + timedelta(days=1)


def is_stale(newest: Period, today: date) -> bool:
    return today >= stale_from(newest)


@dataclass(frozen=True, slots=True)
class Violation:
    column: str
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class WaitFigures:
    """One cell of the lägesbild. A suppressed cell has every figure None."""

    period: Period
    region: str
    care_area: str
    status: Status
    suppressed: bool
    count: int | None = None
    buckets: tuple[int, ...] | None = None
    share_within_90: float | None = None
    median_days: float | None = None
    mean_days: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (str(self.period), self.region, self.care_area, self.status.value)

    def canonical(self) -> dict[str, object]:
        """The figures as plain values, equal exactly when the figures are the same."""
        return {
            "period": str(self.period), "region": self.region, "care_area": self.care_area,
            "status": self.status.value, "suppressed": self.suppressed, "count": self.count,
            "buckets": list(self.buckets) if self.buckets is not None else None,
            "share_within_90": None if self.share_within_90 is None else round(self.share_within_90, 4),
            "median_days": None if self.median_days is None else round(self.median_days, 1),
            "mean_days": None if self.mean_days is None else round(self.mean_days, 1),
        }


def check(figures: WaitFigures, *, regions: set[str] | dict[str, object],
          care_areas: set[str] | dict[str, object]) -> list[Violation]:
    """Every rule the cell breaks (empty when it is valid)."""
    out: list[Violation] = []
    f = figures
    if f.period.year < FIRST_COMPARABLE_YEAR:
        out.append(Violation("period", "comparable_period",
                             f"{f.period} is before {FIRST_COMPARABLE_YEAR}; earlier data is not comparable"))
    if f.region not in regions:
        out.append(Violation("region", "known_region", f"unknown region code {f.region!r}"))
    if f.care_area not in care_areas:
        out.append(Violation("care_area", "known_care_area", f"unknown care area {f.care_area!r}"))
    if f.suppressed:
        filled = [name for name, value in (("count", f.count), ("buckets", f.buckets),
                                           ("share_within_90", f.share_within_90),
                                           ("median_days", f.median_days), ("mean_days", f.mean_days))
                  if value is not None]
        if filled:
            out.append(Violation(filled[0], "suppressed_cell_empty",
                                 f"a suppressed cell (fewer than {SUPPRESS_BELOW}) carries no figures, "
                                 f"but {', '.join(filled)} given"))
        return out
    if f.count is None:
        return [*out, Violation("count", "required", "count is required for a cell that is not suppressed")]
    if not 0 <= f.count <= MAX_COUNT:
        out.append(Violation("count", "range", f"count {f.count} is not within 0..{MAX_COUNT}"))
    elif f.count < SUPPRESS_BELOW:
        out.append(Violation("suppressed", "small_cell_suppressed",
                             f"count {f.count} is under {SUPPRESS_BELOW}: the cell must be suppressed"))
    if f.buckets is None:
        out.append(Violation("days_0_30", "required", "the bucket counts are required"))
    else:
        negative = [i for i, n in enumerate(f.buckets) if n < 0]
        if negative:
            out.append(Violation(BUCKET_COLUMNS[negative[0]], "range", "a bucket count cannot be negative"))
        elif sum(f.buckets) != f.count:
            out.append(Violation("count", "buckets_sum_to_count",
                                 f"the buckets add up to {sum(f.buckets)}, not the count {f.count}"))
    if f.share_within_90 is None:
        out.append(Violation("share_within_90", "required", "share within 90 days is required"))
    elif not 0.0 <= f.share_within_90 <= 1.0:
        out.append(Violation("share_within_90", "share_0_to_1",
                             f"share within 90 days {f.share_within_90} is not within 0..1"))
    if f.median_days is None:
        out.append(Violation("median_days", "required", "median days is required"))
    elif not 0 <= f.median_days <= MAX_DAYS:
        out.append(Violation("median_days", "range", f"median days {f.median_days} is not within 0..{MAX_DAYS}"))
    elif f.buckets is not None and not out and f.count:
        low, high = median_range(f.buckets)
        if not low <= f.median_days <= high:
            out.append(Violation("median_days", "median_in_buckets",
                                 f"median days {f.median_days:g} is outside {low}..{high}, where the "
                                 f"buckets put the middle patient"))
    if f.status is Status.COMPLETED:
        if f.mean_days is None:
            out.append(Violation("mean_days", "required", "mean days is required for completed operations"))
        elif not 0 <= f.mean_days <= MAX_DAYS:
            out.append(Violation("mean_days", "range", f"mean days {f.mean_days} is not within 0..{MAX_DAYS}"))
    elif f.mean_days is not None:
        out.append(Violation("mean_days", "mean_only_completed",
                             "mean days is published for completed operations only"))
    return out


# Each bucket's first and last day; the open-ended one runs to the largest wait stored.
BUCKET_DAYS: tuple[tuple[int, int], ...] = ((0, 30), (31, 60), (61, 90), (91, 120), (121, 180), (181, 365),
                                            (366, MAX_DAYS))


def median_range(buckets: tuple[int, ...]) -> tuple[int, int]:
    """The days the median can lie on, given the bucket counts: from the first day of the bucket of
    the lower middle patient to the last day of the bucket of the upper one, a day either side for
    a median rounded to whole days."""
    n = sum(buckets)
    ranks = ((n - 1) // 2, n // 2)
    found: list[int] = []
    for rank in ranks:
        seen = 0
        for index, size in enumerate(buckets):
            seen += size
            if rank < seen:
                found.append(index)
                break
    return max(0, BUCKET_DAYS[found[0]][0] - 1), BUCKET_DAYS[found[1]][1] + 1


BUCKET_COLUMNS: tuple[str, ...] = ("days_0_30", "days_31_60", "days_61_90", "days_91_120", "days_121_180",
                                   "days_181_365", "days_366_plus")


@dataclass(frozen=True, slots=True)
class RegionView:
    """What `nvf waits` shows for one region and care area: its newest month and the trend."""

    region: str
    care_area: str
    newest: Period | None
    waiting: WaitFigures | None
    completed: WaitFigures | None
    trend: tuple[float | None, ...]  # share within 90 days of the waiting, oldest first
    stale: bool

    @property
    def has_data(self) -> bool:
        return self.newest is not None


def region_view(region: str, care_area: str, cells: list[WaitFigures], *, today: date,
                period: Period | None = None) -> RegionView:
    """Summarise one region's cells of one care area, as of `period` (default its newest month)."""
    mine = [c for c in cells if c.region == region and c.care_area == care_area]
    months = sorted({c.period for c in mine})
    if period is not None:
        months = [m for m in months if m <= period]
    if not months:
        return RegionView(region, care_area, None, None, None, (), stale=False)
    newest = months[-1]
    by_key = {(c.period, c.status): c for c in mine}
    window = [newest.plus(-i) for i in range(TREND_MONTHS - 1, -1, -1)]
    trend = tuple(_share(by_key.get((m, Status.WAITING))) for m in window)
    # Staleness is about what the region has sent, not about the month asked for.
    stale = is_stale(max(c.period for c in mine), today)
    return RegionView(region, care_area, newest, by_key.get((newest, Status.WAITING)),
                      by_key.get((newest, Status.COMPLETED)), trend, stale)


def _share(cell: WaitFigures | None) -> float | None:
    return None if cell is None or cell.suppressed else cell.share_within_90
