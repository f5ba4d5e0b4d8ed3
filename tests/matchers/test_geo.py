from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import pytest

from matchers.geo import ancillary_split, distance_km, travel_cost_for_distance, travel_cost_sek
from matchers.reference import Tariff, care_areas, default_tariff, regions


def test_reference_data_is_read_from_the_package() -> None:
    assert len(regions()) == 21
    assert regions()["25"].hub_city == "Luleå"
    assert list(care_areas()) == ["cataract", "inguinal-hernia", "knee-replacement"]
    assert default_tariff() == Tariff(1, 3.0, 300, 1, 1200)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [("01", "03", 63.6), ("01", "25", 726.2), ("25", "13", 1106.8), ("14", "12", 234.9)],
)
def test_known_distances(a: str, b: str, km: float) -> None:
    assert distance_km(a, b) == km
    assert distance_km(b, a) == km


def test_every_distance_matches_the_formula_computed_here() -> None:
    # Independently from the reference data as shipped in the repo, not the package's table.
    data = Path(__file__).resolve().parents[2] / "matchers" / "data" / "regions.csv"
    coords = {r["code"]: (float(r["lat"]), float(r["lon"])) for r in csv.DictReader(data.open())}
    for a, (lat1, lon1) in coords.items():
        for b, (lat2, lon2) in coords.items():
            p1, p2 = math.radians(lat1), math.radians(lat2)
            h = (
                math.sin((p2 - p1) / 2) ** 2
                + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
            )
            expected = 0.0 if a == b else round(2 * 6371.0 * math.asin(math.sqrt(h)), 1)
            assert distance_km(a, b) == expected, (a, b)


def test_distance_is_zero_within_a_region_and_symmetric() -> None:
    for a in regions():
        assert distance_km(a, a) == 0.0
        for b in regions():
            assert distance_km(a, b) == distance_km(b, a)
            if a != b:
                assert distance_km(a, b) > 0


def test_unknown_region_is_refused() -> None:
    with pytest.raises(KeyError):
        distance_km("01", "99")


def test_travel_cost_is_round_trips_times_km_plus_a_night_beyond_the_threshold() -> None:
    tariff = default_tariff()
    assert travel_cost_sek("01", "01") == 0.0
    assert travel_cost_sek("01", "03") == round(2 * 63.6 * 3.0, 2) == 381.6
    assert travel_cost_sek("01", "25") == round(2 * 726.2 * 3.0 + 1200, 2) == 5557.2
    assert travel_cost_sek("01", "25", tariff) == 5557.2
    # The night is added only strictly above the threshold.
    assert travel_cost_for_distance(300.0, tariff) == 1800.0
    assert travel_cost_for_distance(300.1, tariff) == 1800.6 + 1200


def test_travel_cost_follows_a_custom_tariff() -> None:
    tariff = Tariff(
        round_trips_per_patient=2,
        per_km_sek=2.5,
        overnight_threshold_km=100,
        nights_when_over_threshold=2,
        night_sek=900,
    )
    assert travel_cost_sek("01", "03", tariff) == 2 * 2 * 63.6 * 2.5
    assert travel_cost_sek("01", "25", tariff) == 2 * 2 * 726.2 * 2.5 + 2 * 900


def test_the_ancillary_cost_splits_into_travel_and_the_nights_beyond_the_threshold() -> None:
    tariff = default_tariff()
    far, near = ("01", "25"), ("01", "03")  # Stockholm-Luleå is past the threshold, Stockholm-Uppsala is not
    far_km, near_km = distance_km(*far), distance_km(*near)
    assert far_km > tariff.overnight_threshold_km > near_km
    travel, stay = ancillary_split(travel_cost_sek(*far), far_km, tariff)
    assert stay == Decimal(tariff.nights_when_over_threshold * tariff.night_sek) > 0
    assert travel + stay == Decimal(str(travel_cost_sek(*far)))
    travel, stay = ancillary_split(travel_cost_sek(*near), near_km, tariff)
    assert (travel, stay) == (Decimal(str(travel_cost_sek(*near))), Decimal(0))
