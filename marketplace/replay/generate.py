"""Turn a static scenario (the contract's format) into a stream over a chosen number of weeks.

Seeded, so the same scenario, weeks, seed and options give the same stream, byte for byte.
The scenario gives the market's shape: who offers what, at which price and window length, and
who waits with which terms. Over the weeks:

- every region publishes on one working day of the week of its own (seeded): its **weekly
  list**. Regions do not broker one patient or one slot at a time: a home region's waiting-list
  office sends the week's list of patients it cannot treat in time, and a providing region sends
  the capacity its units freed up that week, so what a region publishes in a week arrives in one
  export (the same moment) and a clearing round has choices to make among several patients and
  several offers;
- each offer of the scenario (a unit's block of capacity over a window) falls in a random week
  and goes out on its region's list day of that week, its window opening 3 to 14 days later and
  as long as in the scenario (21 to 70 days);
- a share of each request's patients (`backlog`) is already past the guarantee at the start and
  goes out on their region's first list day; the others get guarantee dates spread over the
  weeks, and their home region lists them when it sees the breach coming: on its last list day
  at least 0 to 10 days before the breach (the current practice that pre-breach matching moves
  earlier), never before the start. A request goes out once per list day with that list's
  patients, its window open from then for as long as in the scenario (90 to 150 days); each
  patient carries the predicted `breach_date` (their guarantee date);
- a share of patients is withdrawn later (their home region found care itself), and a share of
  offers withdrawn part-way through their window;
- `scale` keeps a seeded share of the patients and the same share of every offer's capacity;
  `capacity_factor` multiplies every offer's capacity (to make a market tighter or looser).

Offers and requests go out in the regions' 08:00 export of a working day; withdrawals come at
any time of the working day.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from marketplace.lifecycle import GUARANTEE_DAYS
from marketplace.replay.stream import (
    MAX_DAYS,
    Behaviour,
    CaseWithdrawal,
    OfferArrival,
    OfferWithdrawal,
    RequestArrival,
    Stream,
    StreamEvent,
    day_start,
)
from matchers.model import Patient, Request, Scenario


@dataclass(frozen=True)
class GeneratorOptions:
    weeks: int = 12
    seed: int = 1
    backlog: float = 0.2
    scale: float = 1.0
    capacity_factor: float = 1.0
    case_withdrawal_rate: float = 0.03
    offer_withdrawal_rate: float = 0.05
    care_area: str | None = None
    behaviour: Behaviour = field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        if not 1 <= self.weeks <= 40:
            raise ValueError("weeks must be 1..40")
        for name in ("backlog", "case_withdrawal_rate", "offer_withdrawal_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if not 0 < self.scale <= 1:
            raise ValueError("scale must be above 0 and at most 1")
        if not 0 < self.capacity_factor <= 10:
            raise ValueError("capacity_factor must be above 0 and at most 10")


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _working_moment(rng: random.Random, day: date, spread: bool = False) -> datetime:
    """08:00 on `day` or the next working day: the regions' systems publish what the day's work
    decided in one morning export; `spread` puts the moment anywhere in the working day."""
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return day_start(day, 8) + timedelta(minutes=rng.randrange(0, 9 * 60) if spread else 0)


def _list_days(scenario: Scenario, rng: random.Random) -> dict[str, int]:
    """Each region's list day (ISO weekday 1-5), seeded, in the regions' sorted order."""
    regions = sorted({o.region for o in scenario.offers} | {r.region for r in scenario.requests})
    return {region: rng.randint(1, 5) for region in regions}


def _list_day_on_or_before(weekday: int, day: date, start: date) -> date:
    """The region's last list day on or before `day`, but not before its first one from `start`."""
    last = day - timedelta(days=(day.isoweekday() - weekday) % 7)
    first = start + timedelta(days=(weekday - start.isoweekday()) % 7)
    return max(last, first)


def generate_stream(scenario: Scenario, options: GeneratorOptions) -> Stream:
    rng = random.Random(options.seed)
    start = scenario.as_of
    horizon = options.weeks * 7
    events: list[StreamEvent] = []
    last_day = start
    list_day = _list_days(scenario, rng)
    offers = [o for o in scenario.offers if options.care_area in (None, o.care_area)]
    for offer in offers:
        capacity = max(1, round(offer.capacity * options.scale * options.capacity_factor))
        week = start + timedelta(days=7 * rng.randrange(0, max(1, options.weeks - 1)) + 6)
        at = _working_moment(rng, _list_day_on_or_before(list_day[offer.region], week, start))
        opens = at.date() + timedelta(days=rng.randint(3, 14))
        length = _clamp((offer.window_end - offer.window_start).days, 21, 70)
        published = replace(offer, capacity=capacity, window_start=opens, window_end=opens + timedelta(days=length))
        events.append(OfferArrival(at, published))
        last_day = max(last_day, published.window_end)
        if rng.random() < options.offer_withdrawal_rate:
            gone = opens + timedelta(days=rng.randint(0, length // 2))
            events.append(OfferWithdrawal(_working_moment(rng, gone, spread=True), offer.offer_id))
    requests = [r for r in scenario.requests if options.care_area in (None, r.care_area)]
    withdrawals: list[tuple[date, str]] = []
    for request in requests:
        by_day: dict[date, list[Patient]] = defaultdict(list)
        for patient in request.patients:
            if rng.random() >= options.scale:
                continue
            if rng.random() < options.backlog:
                guarantee = start - timedelta(days=rng.randint(1, 150))
                day = start
            else:
                guarantee = start + timedelta(days=rng.randrange(0, horizon))
                day = guarantee - timedelta(days=rng.randint(0, 10))
            day = _list_day_on_or_before(list_day[request.region], day, start)
            by_day[day].append(Patient(patient.case_ref, guarantee - timedelta(days=GUARANTEE_DAYS),
                                       breach_date=guarantee))
            if rng.random() < options.case_withdrawal_rate:
                withdrawals.append((day + timedelta(days=rng.randint(10, 60)), patient.case_ref))
        length = _clamp((request.window_end - request.window_start).days, 90, 150)
        for day in sorted(by_day):
            at = _working_moment(rng, day)
            opens = at.date()
            r = Request(f"{request.request_id}-{day:%m%d}", request.region, request.care_area, opens,
                        opens + timedelta(days=length), request.max_price_sek, request.max_travel_km,
                        request.excluded_regions, request.requires_agreement, tuple(by_day[day]))
            events.append(RequestArrival(at, r))
            last_day = max(last_day, r.window_end)
    end = min(last_day + timedelta(days=14), start + timedelta(days=MAX_DAYS))
    for day, case_ref in withdrawals:
        moment = _working_moment(rng, day, spread=True)
        if moment.date() <= end:
            events.append(CaseWithdrawal(moment, case_ref))
    events = [e for e in events if e.at.date() <= end]
    events.sort(key=lambda e: e.at)
    area = f", {options.care_area}" if options.care_area else ""
    name = f"{scenario.name}{area}: {options.weeks} weeks, seed {options.seed}"
    return Stream(name, options.seed, start, end, options.behaviour, scenario.agreements, tuple(events))
