"""Market health from case histories: lead times, cases per state, guarantee exposure, grouped by
the home region and care area of each case.

Lead times, in days (fractions kept):

- need -> match: from the need being identified to the proposal of the match the case holds
  (or held when care was performed); earlier matches that were declined or lapsed count as
  waiting, which is what the patient experienced.
- match -> referral: from that proposal to the referral being sent.
- referral -> performed: from the referral to the day care was performed (calendar days, as the
  performed date has no time of day).

p90 is the nearest-rank percentile: a value that was actually observed.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from marketplace.lifecycle.case import CaseState
from marketplace.lifecycle.guarantee import GuaranteePolicy, days_left, is_breached
from marketplace.lifecycle.states import GUARANTEE_RUNNING, CaseStatus
from marketplace.lifecycle.swedish_time import SWEDISH_TIME
from marketplace.lifecycle.timeline import TimelineEntry, replay_timeline

GroupKey = tuple[str, str]
"""(home region, care area)"""

_DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class LeadTime:
    count: int
    median_days: float | None
    p90_days: float | None

    @classmethod
    def of(cls, days: Iterable[float]) -> LeadTime:
        values = sorted(days)
        if not values:
            return cls(0, None, None)
        rank = math.ceil(0.9 * len(values))
        return cls(len(values), float(statistics.median(values)), values[rank - 1])


@dataclass(frozen=True)
class LeadTimes:
    need_to_match: LeadTime
    match_to_referral: LeadTime
    referral_to_performed: LeadTime


@dataclass(frozen=True)
class GuaranteeExposure:
    """Cases whose care is still pending: within the warning horizon, or past the guarantee."""

    near: tuple[str, ...] = ()
    past: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupStats:
    home_region: str
    care_area: str
    cases: int
    per_state: dict[str, int]
    lead_times: LeadTimes
    guarantee: GuaranteeExposure


@dataclass(frozen=True)
class MarketStats:
    today: date
    groups: dict[GroupKey, GroupStats] = field(default_factory=dict)
    overall: GroupStats | None = None


def _days_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / _DAY_SECONDS


def lead_times(states: Iterable[CaseState]) -> LeadTimes:
    need_match: list[float] = []
    match_ref: list[float] = []
    ref_perf: list[float] = []
    for s in states:
        if s.matched_at is not None:
            need_match.append(_days_between(s.identified_at, s.matched_at))
            if s.referred_at is not None:
                match_ref.append(_days_between(s.matched_at, s.referred_at))
        if s.referred_at is not None and s.performed_on is not None:
            ref_perf.append(float((s.performed_on - s.referred_at.astimezone(SWEDISH_TIME).date()).days))
    return LeadTimes(LeadTime.of(need_match), LeadTime.of(match_ref), LeadTime.of(ref_perf))


def cases_per_state(states: Iterable[CaseState]) -> dict[str, int]:
    """Count of cases in each state; every state is present, zero or not, for stable dashboards."""
    counts = Counter(s.status.value for s in states)
    return {status.value: counts.get(status.value, 0) for status in CaseStatus}


def guarantee_exposure(states: Iterable[CaseState], today: date,
                       policy: GuaranteePolicy | None = None) -> GuaranteeExposure:
    """Cases with care pending that are past their guarantee date, or within the widest warning
    horizon of it (default 14 days)."""
    horizon = max((policy or GuaranteePolicy()).warn_days_before, default=0)
    near: list[str] = []
    past: list[str] = []
    for s in states:
        if s.status not in GUARANTEE_RUNNING:
            continue
        if is_breached(s.guarantee_date, today):
            past.append(s.case_ref)
        elif days_left(s.guarantee_date, today) <= horizon:
            near.append(s.case_ref)
    return GuaranteeExposure(tuple(sorted(near)), tuple(sorted(past)))


def _group(key: GroupKey, states: Sequence[CaseState], today: date,
           policy: GuaranteePolicy | None) -> GroupStats:
    return GroupStats(key[0], key[1], len(states), cases_per_state(states), lead_times(states),
                      guarantee_exposure(states, today, policy))


def stats_of_states(states: Iterable[CaseState], today: date,
                    policy: GuaranteePolicy | None = None) -> MarketStats:
    all_states = list(states)
    by_group: dict[GroupKey, list[CaseState]] = defaultdict(list)
    for s in all_states:
        by_group[(s.home_region, s.care_area)].append(s)
    groups = {key: _group(key, by_group[key], today, policy) for key in sorted(by_group)}
    return MarketStats(today, groups, _group(("*", "*"), all_states, today, policy))


def market_stats(timelines: Iterable[Sequence[TimelineEntry]], today: date,
                 policy: GuaranteePolicy | None = None) -> MarketStats:
    """Stats of the cases whose timelines are given, as of `today` (a Swedish calendar date)."""
    return stats_of_states((replay_timeline(t) for t in timelines), today, policy)
