"""Properties of both policies on generated small books, and optimality against brute force."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchers.allocation import Allocation
from matchers.audit import audit_allocation, summarize
from matchers.clearing import POLICIES, clear
from matchers.feasibility import failing_rule
from matchers.geo import travel_cost_sek
from matchers.model import Agreement, Offer, Patient, Request, Scenario

AS_OF = date(2026, 3, 2)
REGIONS = ("01", "03", "13", "25", "09")
AREAS = ("cataract", "cataract", "cataract", "inguinal-hernia")  # weighted: mostly one book


def _day(draw: st.DrawFn, low: int, high: int) -> date:
    return AS_OF + timedelta(days=draw(st.integers(low, high)))


@st.composite
def scenarios(draw: st.DrawFn, max_offers: int = 5, max_requests: int = 4, max_patients: int = 5) -> Scenario:
    offers = []
    for i in range(draw(st.integers(1, max_offers))):
        # Windows mostly open and overlapping, so that patients compete for seats.
        start = _day(draw, -12, 20)
        offers.append(
            Offer(
                offer_id=f"off-{i}",
                region=draw(st.sampled_from(REGIONS)),
                unit_hsa_id=f"SE-{i}",
                care_area=draw(st.sampled_from(AREAS)),
                capacity=draw(st.integers(1, 3)),
                window_start=start,
                window_end=start + timedelta(days=draw(st.integers(3, 60))),
                price_sek=draw(st.sampled_from([8000, 9000, 9000.5, 11999.9, 15000])),
            )
        )
    offer_ids = [o.offer_id for o in offers]
    requests = []
    case = itertools.count()
    for i in range(draw(st.integers(1, max_requests))):
        start = _day(draw, -8, 20)
        patients = tuple(
            Patient(
                case_ref=f"case-{next(case):03d}",
                waiting_since=_day(draw, -400, 5),
                excluded_offers=frozenset(draw(st.sets(st.sampled_from(offer_ids), max_size=1))),
            )
            for _ in range(draw(st.integers(1, max_patients)))
        )
        requests.append(
            Request(
                request_id=f"req-{i}",
                region=draw(st.sampled_from(REGIONS)),
                care_area=draw(st.sampled_from(AREAS)),
                window_start=start,
                window_end=start + timedelta(days=draw(st.integers(5, 90))),
                max_price_sek=draw(st.sampled_from([None, None, 9000, 12000])),
                max_travel_km=draw(st.sampled_from([None, None, 100, 500, 900])),
                excluded_regions=draw(st.sampled_from([(), (), ("13",), ("01", "25")])),
                requires_agreement=draw(st.sampled_from([False, False, True])),
                patients=patients,
            )
        )
    agreements = tuple(
        Agreement(p, q, a)
        for p, q, a in draw(
            st.sets(
                st.tuples(st.sampled_from(REGIONS), st.sampled_from(REGIONS), st.sampled_from(AREAS)),
                max_size=6,
            )
        )
    )
    return Scenario("generated", AS_OF, tuple(sorted(agreements, key=repr)), tuple(offers), tuple(requests))


def _key(a: Allocation) -> tuple[int, int, int]:
    """Lexicographic objective as one comparable tuple (cost in öre, negated: less is better)."""
    return (a.placed, a.wait_days, -round(a.total_cost_sek * 100))


def brute_force(s: Scenario) -> tuple[int, int, int]:
    """The best objective over every possible allocation, by exhaustive search."""
    people = [(r, p) for r in s.requests for p in r.patients]
    options = [
        [
            o
            for o in s.offers
            if o.offer_id not in p.excluded_offers and failing_rule(r, o, s.as_of, s.agreement_set) is None
        ]
        for r, p in people
    ]
    room = {o.offer_id: o.capacity for o in s.offers}
    best = (0, 0, 0)

    def search(i: int, placed: int, wait: int, cost: int) -> None:
        nonlocal best
        if i == len(people):
            best = max(best, (placed, wait, -cost))
            return
        search(i + 1, placed, wait, cost)
        r, p = people[i]
        for o in options[i]:
            if room[o.offer_id]:
                room[o.offer_id] -= 1
                pair = round((o.price_sek + travel_cost_sek(r.region, o.region)) * 100)
                search(i + 1, placed + 1, wait + p.wait_days(s.as_of), cost + pair)
                room[o.offer_id] += 1

    search(0, 0, 0, 0)
    return best


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_both_policies_respect_every_contract_rule(s: Scenario) -> None:
    # The audit checks capacity, feasibility (excluded_offers included), exactly-once and reasons.
    for policy in POLICIES:
        allocation = clear(s, policy)
        assert audit_allocation(s, allocation.rows()) == [], policy
        summary = summarize(s, allocation.rows())
        assert (summary.placed, summary.wait_days) == (allocation.placed, allocation.wait_days)


@PROPERTY
@given(scenarios())
def test_optimal_is_never_behind_greedy(s: Scenario) -> None:
    assert _key(clear(s, "optimal")) >= _key(clear(s, "greedy"))


@settings(max_examples=120, deadline=None)
@given(scenarios(max_offers=3, max_requests=3, max_patients=3))
def test_optimal_equals_the_brute_force_optimum(s: Scenario) -> None:
    assert _key(clear(s, "optimal")) == brute_force(s)


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_deterministic(s: Scenario) -> None:
    for policy in POLICIES:
        assert clear(s, policy).rows() == clear(s, policy).rows()
