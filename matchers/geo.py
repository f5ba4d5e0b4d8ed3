"""Distances between regions (hub city to hub city) and the ancillary travel cost they imply."""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cache

from matchers.reference import Tariff, default_tariff, regions

EARTH_RADIUS_KM = 6371.0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Unrounded great-circle distance on a sphere of radius 6371.0 km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@cache
def _distance_table() -> dict[tuple[str, str], float]:
    # 21 x 21 pairs: computed once, then every feasibility check is a dict lookup.
    regs = regions()
    table: dict[tuple[str, str], float] = {}
    for a, ra in regs.items():
        for b, rb in regs.items():
            table[a, b] = 0.0 if a == b else round(haversine_km(ra.lat, ra.lon, rb.lat, rb.lon), 1)
    return table


def distance_km(a: str, b: str) -> float:
    """Hub-to-hub distance between two region codes, rounded to 0.1 km; 0.0 within a region.

    Raises KeyError for an unknown region code.
    """
    return _distance_table()[a, b]


def travel_cost_for_distance(distance: float, tariff: Tariff) -> float:
    """Ancillary cost of one patient travelling `distance` km, rounded to whole öre."""
    cost = tariff.round_trips_per_patient * 2 * distance * tariff.per_km_sek
    if distance > tariff.overnight_threshold_km:
        cost += tariff.nights_when_over_threshold * tariff.night_sek
    # Money is kept to the öre; this also strips float noise such as 740.4000000000001.
    return round(cost, 2)


def ancillary_split(ancillary_cost_sek: float, distance: float, tariff: Tariff) -> tuple[Decimal, Decimal]:
    """(travel, accommodation) of an ancillary cost, as the home region pays them: the nights' stay
    beyond the overnight threshold, the rest travel."""
    nights = tariff.nights_when_over_threshold * tariff.night_sek if distance > tariff.overnight_threshold_km else 0
    return Decimal(str(round(ancillary_cost_sek - nights, 2))), Decimal(nights)


def travel_cost_sek(a: str, b: str, tariff: Tariff | None = None) -> float:
    """Ancillary cost (kringkostnad) of sending a patient of region `a` to region `b`."""
    if tariff is None:
        return _default_travel_cost_table()[a, b]
    return travel_cost_for_distance(distance_km(a, b), tariff)


@cache
def _default_travel_cost_table() -> dict[tuple[str, str], float]:
    tariff = default_tariff()
    return {pair: travel_cost_for_distance(d, tariff) for pair, d in _distance_table().items()}
