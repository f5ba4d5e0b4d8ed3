"""Stats from timelines: lead times, cases per state, guarantee exposure, by region and care area."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from marketplace.lifecycle import (
    CaseStatus,
    Command,
    IdentifyNeed,
    LeadTime,
    PlaceOnBook,
    append_all,
    cases_per_state,
    market_stats,
)
from tests.lifecycle.journey import Journey, happy_path, need


def carried(case_ref: str, steps: int, *, home: str = "01", care_area: str = "cataract",
            waiting_since: date = date(2026, 1, 5), match_after: timedelta | None = None) -> Journey:
    j = Journey()
    for command, after, _ in happy_path(case_ref)[:steps]:
        cmd: Command = command
        if isinstance(cmd, IdentifyNeed):
            cmd = dataclasses.replace(cmd, home_region=home, care_area=care_area, waiting_since=waiting_since)
        if cmd.NAME == "propose_match" and match_after is not None:
            after = match_after
        j.do(cmd, after)
    return j


def test_lead_time_median_and_nearest_rank_p90() -> None:
    assert LeadTime.of([]) == LeadTime(0, None, None)
    assert LeadTime.of(float(d) for d in range(10, 0, -1)) == LeadTime(10, 5.5, 9.0)
    assert LeadTime.of([3.0]) == LeadTime(1, 3.0, 3.0)


def test_lead_times_per_group_from_timelines() -> None:
    fast = carried("c-fast", 14)                              # matched 2 days 1 hour after the need
    slow = carried("c-slow", 14, match_after=timedelta(days=6))  # 6 days 1 hour
    knee = carried("c-knee", 3, home="03", care_area="knee-replacement")
    stats = market_stats([append_all([], j.history) for j in (fast, slow, knee)], date(2026, 3, 10))
    cataract = stats.groups[("01", "cataract")]
    assert cataract.cases == 2
    lt = cataract.lead_times
    assert lt.need_to_match.count == 2
    assert lt.need_to_match.median_days == pytest.approx((2 + 1 / 24 + 6 + 1 / 24) / 2)
    assert lt.need_to_match.p90_days == pytest.approx(6 + 1 / 24)
    assert lt.match_to_referral == LeadTime(2, 47 / 24, 47 / 24)  # 20 h + 2 h + 1 day + 1 h
    assert lt.referral_to_performed.count == 2
    knee_stats = stats.groups[("03", "knee-replacement")]
    assert knee_stats.lead_times.need_to_match.count == 1
    assert knee_stats.lead_times.match_to_referral.count == 0
    assert stats.overall is not None and stats.overall.cases == 3


def test_cases_per_state_lists_every_state() -> None:
    states = [carried("a", 2).case, carried("b", 2).case, carried("c", 3).case]
    counts = cases_per_state(states)
    assert set(counts) == {s.value for s in CaseStatus}
    assert counts["on_book"] == 2 and counts["match_proposed"] == 1 and counts["closed"] == 0


def test_cases_near_and_past_their_guarantee_by_group() -> None:
    today = date(2026, 3, 10)
    past = carried("c-past", 2, waiting_since=date(2025, 12, 1))     # guarantee 2026-03-01
    near = carried("c-near", 3, waiting_since=date(2025, 12, 15))    # guarantee 2026-03-15
    far = carried("c-far", 2, waiting_since=date(2026, 2, 1))        # guarantee 2026-05-02
    done = carried("c-done", 14, waiting_since=date(2025, 12, 1))    # past, but care performed
    other = carried("c-other", 2, home="14", waiting_since=date(2025, 11, 1))
    stats = market_stats([append_all([], j.history) for j in (past, near, far, done, other)], today)
    g = stats.groups[("01", "cataract")].guarantee
    assert (g.near, g.past) == (("c-near",), ("c-past",))
    assert stats.groups[("14", "cataract")].guarantee.past == ("c-other",)
    assert stats.overall is not None and stats.overall.guarantee.past == ("c-other", "c-past")


def test_a_timeline_ending_on_the_book_counts_as_on_book() -> None:
    j = Journey()
    j.do(need("solo"))
    j.do(PlaceOnBook("solo"))
    stats = market_stats([append_all([], j.history)], date(2026, 3, 2))
    assert stats.groups[("01", "cataract")].per_state["on_book"] == 1
