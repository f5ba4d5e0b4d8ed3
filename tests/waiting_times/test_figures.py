"""The lägesbild's rules, pure: publication and staleness, the checks on a cell, the capacity band."""

from __future__ import annotations

from datetime import date

import pytest

from marketplace.waiting_times.capacity import Window, band, report
from marketplace.waiting_times.figures import (
    Period,
    Status,
    WaitFigures,
    check,
    is_stale,
    latest_published,
    region_view,
    stale_from,
)
from matchers.reference import care_areas, regions

REGIONS, CARE_AREAS = set(regions()), set(care_areas())


def cell(**overrides: object) -> WaitFigures:
    values: dict[str, object] = dict(period=Period(2026, 9), region="01", care_area="cataract",
                                     status=Status.COMPLETED, suppressed=False, count=100,
                                     buckets=(40, 30, 10, 10, 5, 5, 0), share_within_90=0.8, median_days=38.0,
                                     mean_days=52.5)
    values.update(overrides)
    return WaitFigures(**values)  # type: ignore[arg-type]


def rules(figures: WaitFigures) -> list[tuple[str, str]]:
    return [(v.column, v.rule) for v in check(figures, regions=REGIONS, care_areas=CARE_AREAS)]


def test_a_month_is_published_on_the_25th_of_the_next():
    assert Period(2026, 9).published_on() == date(2026, 10, 25)
    assert Period(2026, 12).published_on() == date(2027, 1, 25)
    assert latest_published(date(2026, 11, 24)) == Period(2026, 9)
    assert latest_published(date(2026, 11, 25)) == Period(2026, 10)


def test_figures_turn_stale_six_weeks_after_their_newest_month_was_due():
    # 2026-09 is due 2026-10-25; 42 days later (2026-12-06) it is still fresh, the day after stale.
    assert stale_from(Period(2026, 9)) == date(2026, 12, 7)
    assert not is_stale(Period(2026, 9), date(2026, 12, 6))
    assert is_stale(Period(2026, 9), date(2026, 12, 7))
    assert not is_stale(Period(2026, 9), date(2026, 10, 1))


def test_region_view_marks_a_late_region_stale_and_an_unreported_one_as_no_data():
    cells = [cell(period=Period(2026, m), status=s, mean_days=None if s is Status.WAITING else 52.5)
             for m in range(1, 10) for s in Status]
    view = region_view("01", "cataract", cells, today=date(2026, 12, 7))
    assert view.newest == Period(2026, 9) and view.stale
    assert view.trend[-9:] == (0.8,) * 9 and view.trend[:4] == (None,) * 4
    assert not region_view("01", "cataract", cells, today=date(2026, 12, 6)).stale
    assert not region_view("03", "cataract", cells, today=date(2026, 12, 6)).has_data


def test_a_valid_cell_passes():
    assert rules(cell()) == []
    assert rules(cell(status=Status.WAITING, mean_days=None)) == []


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"buckets": (40, 30, 10, 10, 5, 5, 1)}, ("count", "buckets_sum_to_count")),
    ({"share_within_90": 1.2}, ("share_within_90", "share_0_to_1")),
    ({"share_within_90": -0.1}, ("share_within_90", "share_0_to_1")),
    ({"status": Status.WAITING}, ("mean_days", "mean_only_completed")),
    ({"mean_days": None}, ("mean_days", "required")),
    ({"region": "02"}, ("region", "known_region")),
    ({"care_area": "hip"}, ("care_area", "known_care_area")),
    ({"period": Period(2020, 12)}, ("period", "comparable_period")),
    ({"count": 4, "buckets": (4, 0, 0, 0, 0, 0, 0)}, ("suppressed", "small_cell_suppressed")),
    ({"suppressed": True}, ("count", "suppressed_cell_empty")),
    ({"median_days": -1.0}, ("median_days", "range")),
    ({"median_days": 95.0}, ("median_days", "median_in_buckets")),
])
def test_each_rule_names_its_column(overrides, expected):
    assert rules(cell(**overrides))[0] == expected


def test_a_suppressed_cell_carries_no_figures():
    assert rules(WaitFigures(Period(2026, 9), "09", "knee-replacement", Status.COMPLETED, suppressed=True)) == []
    assert rules(WaitFigures(Period(2026, 9), "09", "knee-replacement", Status.COMPLETED, suppressed=True,
                             median_days=12.0)) == [("median_days", "suppressed_cell_empty")]


def test_period_format():
    assert str(Period.parse("2026-03")) == "2026-03"
    for bad in ("2026-3", "2026-13", "26-03", "2026/03", ""):
        with pytest.raises(ValueError):
            Period.parse(bad)
    assert Period(2026, 1).plus(-1) == Period(2025, 12) and Period(2025, 12).plus(13) == Period(2027, 1)


def test_the_wait_band_counts_weeks_to_the_window():
    window = Window("off-1", date(2026, 5, 4), date(2026, 6, 1), 10)
    assert str(band(window, date(2026, 3, 2))) == "9 - 13 veckor"
    assert str(band(window, date(2026, 5, 10))) == "0 - 4 veckor"


def test_a_unit_report_free_capacity_band_and_staleness():
    early = Window("a", date(2026, 3, 9), date(2026, 4, 17), 5)
    later = Window("b", date(2026, 5, 4), date(2026, 6, 1), 3)
    full = Window("c", date(2026, 3, 2), date(2026, 3, 6), 0)
    now = report([later, early, full], updated_on=date(2026, 3, 1), today=date(2026, 3, 2))
    assert now.free_capacity and now.places == 8 and str(now.band) == "1 - 7 veckor" and not now.stale
    # After the first window has ended only the later one counts (and 48 days after its update the report is stale).
    after = report([later, early], updated_on=date(2026, 3, 1), today=date(2026, 4, 18))
    assert after.places == 3 and str(after.band) == "2 - 7 veckor" and after.stale
    assert report([later], updated_on=date(2026, 3, 1), today=date(2026, 4, 12)).stale is False
    assert report([later], updated_on=date(2026, 3, 1), today=date(2026, 4, 13)).stale is True
    gone = report([], updated_on=date(2026, 3, 1), today=date(2026, 3, 2))
    assert not gone.free_capacity and gone.band is None


def test_the_median_must_fall_where_the_buckets_put_the_middle_patient():
    from marketplace.waiting_times.figures import median_range

    assert median_range((40, 30, 10, 10, 5, 5, 0)) == (30, 61)  # patients 50 and 51 wait 31..60 days
    assert median_range((1, 0, 0, 0, 0, 0, 1)) == (0, 36_501)
    assert median_range((0, 0, 0, 0, 0, 0, 9)) == (365, 36_501)
