"""The synthetic waiting-time sample shipped with the package (`marketplace/data/waiting_times_sample.csv`).

Regenerate it with

    python -m marketplace.waiting_times.sample > marketplace/data/waiting_times_sample.csv

Output is fully determined by the seed and the end month (a test checks the shipped file is exactly
what this writes). The figures are invented, not Socialstyrelsen's, but shaped like them:

- volumes follow each region's population (about 10.5 million in all): nationally some 11 000
  cataract operations a month, 1 300 inguinal hernia repairs and 1 100 knee replacements, with
  July at about a third of a normal month and June, August and December lower;
- each patient's wait is drawn from a gamma distribution whose mean depends on the care area
  (cataract ~2 months, hernia shorter, knee replacement ~4 months), on the region's own pressure,
  and on its trend over the 13 months (some regions improve, some worsen); the buckets, the share
  within 90 days, the median and the mean are then counted from those waits, so they agree;
- cells under 5 patients are suppressed; Gotland sends most knee replacements to the mainland, so
  its knee cells are small and mostly suppressed;
- Region Jämtland Härjedalen has not reported its two newest months, so its figures show as stale.
"""

from __future__ import annotations

import random
import statistics
import sys
from dataclasses import dataclass

from marketplace.waiting_times.csv_format import write
from marketplace.waiting_times.figures import (
    BUCKETS,
    GUARANTEE_DAYS,
    SUPPRESS_BELOW,
    TREND_MONTHS,
    Period,
    Status,
    WaitFigures,
)

SEED = 20261125
END = Period(2026, 10)
LATE_REGION, MONTHS_LATE = "23", 2

# Population in thousands (2025, rounded), by region code.
POPULATION = {
    "01": 2450, "03": 405, "04": 300, "05": 470, "06": 370, "07": 205, "08": 246, "09": 61, "10": 157,
    "12": 1420, "13": 340, "14": 1760, "17": 283, "18": 306, "19": 280, "20": 288, "21": 288, "22": 243,
    "23": 132, "24": 275, "25": 248,
}


@dataclass(frozen=True)
class AreaShape:
    completed_per_month: int  # nationally
    waiting: int  # nationally, on the last day of a month
    mean_wait_completed: float  # days
    mean_wait_waiting: float  # days waited so far
    shape: float  # gamma shape: lower is a longer tail


AREAS = {
    "cataract": AreaShape(11_000, 18_000, 62, 70, 1.8),
    "inguinal-hernia": AreaShape(1_300, 3_000, 55, 60, 1.6),
    "knee-replacement": AreaShape(1_100, 9_000, 125, 150, 1.5),
}
SEASON = {6: 0.8, 7: 0.35, 8: 0.8, 12: 0.85}
_EDGES = (30, 60, 90, 120, 180, 365)


def generate(seed: int = SEED, end: Period = END) -> list[WaitFigures]:
    rng = random.Random(seed)
    months = [end.plus(-i) for i in range(TREND_MONTHS - 1, -1, -1)]
    total = sum(POPULATION.values())
    out: list[WaitFigures] = []
    for area, shape in AREAS.items():
        for region, people in POPULATION.items():
            pressure = rng.lognormvariate(0, 0.25)
            trend = rng.uniform(-0.25, 0.25)  # change of the mean wait over the 13 months
            local = 0.45 if (region, area) == ("09", "knee-replacement") else 1.0
            for i, month in enumerate(months):
                if region == LATE_REGION and i >= len(months) - MONTHS_LATE:
                    continue
                scale = pressure * (1 + trend * i / (len(months) - 1))
                season = SEASON.get(month.month, 1.0)
                completed = _volume(rng, shape.completed_per_month * people / total * local * season)
                # A slow month leaves more patients waiting.
                waiting = _volume(rng, shape.waiting * people / total * local * (1 + (1 - season) * 0.4))
                out.append(_cell(rng, month, region, area, Status.COMPLETED, completed,
                                 shape.mean_wait_completed * scale, shape.shape))
                out.append(_cell(rng, month, region, area, Status.WAITING, waiting,
                                 shape.mean_wait_waiting * scale * (1 + (1 - season) * 0.2), shape.shape))
    return sorted(out, key=lambda f: (f.period, f.care_area, f.region, f.status.value))


def _volume(rng: random.Random, mean: float) -> int:
    return max(0, round(rng.gauss(mean, max(1.0, mean * 0.06))))


def _cell(rng: random.Random, month: Period, region: str, area: str, status: Status, n: int, mean: float,
          shape: float) -> WaitFigures:
    if n < SUPPRESS_BELOW:
        return WaitFigures(month, region, area, status, suppressed=True)
    waits = [int(rng.gammavariate(shape, mean / shape)) for _ in range(n)]
    buckets = [0] * len(BUCKETS)
    for days in waits:
        buckets[sum(days > edge for edge in _EDGES)] += 1
    return WaitFigures(
        month, region, area, status, suppressed=False, count=n, buckets=tuple(buckets),
        share_within_90=round(sum(d <= GUARANTEE_DAYS for d in waits) / n, 3),
        median_days=float(round(statistics.median(waits))),
        mean_days=round(statistics.fmean(waits), 1) if status is Status.COMPLETED else None,
    )


def sample_text(seed: int = SEED, end: Period = END) -> str:
    """The file as shipped: with a BOM and decimal commas, as a regional export would be."""
    return write(generate(seed, end), bom=True)


if __name__ == "__main__":
    sys.stdout.buffer.write(sample_text().encode("utf-8"))
