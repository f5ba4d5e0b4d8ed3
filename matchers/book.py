"""The book prepared for clearing: patients grouped into request classes, with the offers each
class may take and what each (request region, offer) pair costs.

A request class is a request plus one distinct `excluded_offers` set of its patients; usually a
request is one class. Solvers work on classes, never on patient x offer pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice

from matchers.allocation import CAPACITY_EXHAUSTED, NO_FEASIBLE_OFFER, Allocation, Placement
from matchers.feasibility import failing_rule
from matchers.geo import distance_km, travel_cost_sek
from matchers.model import Offer, Patient, Request, Scenario


@dataclass(frozen=True, slots=True)
class PairCost:
    """What sending a patient of one region to one offer costs (cost = price + ancillary)."""

    price_sek: float
    ancillary_cost_sek: float
    distance_km: float
    cost_sek: float


@dataclass(slots=True)
class RequestClass:
    request: Request
    excluded_offers: frozenset[str]
    patients: list[Patient] = field(default_factory=list)
    # Feasible offers, cheapest first (ties: offer_id): the stable order used to hand out slots.
    offers: tuple[Offer, ...] = ()


@dataclass(slots=True)
class Book:
    scenario: Scenario
    classes: list[RequestClass]
    costs: dict[tuple[str, str], PairCost]

    def cost(self, request: Request, offer: Offer) -> PairCost:
        return self.costs[request.region, offer.offer_id]

    def allocation(self, assigned: Mapping[str, Offer], policy: str) -> Allocation:
        """Placements in scenario order from `case_ref -> offer`; everyone else gets a reason."""
        as_of = self.scenario.as_of
        has_offers = {(id(c.request), c.excluded_offers): bool(c.offers) for c in self.classes}
        placements: list[Placement] = []
        for request in self.scenario.requests:
            for patient in request.patients:
                wait = patient.wait_days(as_of)
                offer = assigned.get(patient.case_ref)
                if offer is None:
                    feasible = has_offers[id(request), patient.excluded_offers]
                    reason = CAPACITY_EXHAUSTED if feasible else NO_FEASIBLE_OFFER
                    placements.append(
                        Placement(patient.case_ref, request.request_id, None, reason, wait_days=wait)
                    )
                    continue
                pc = self.cost(request, offer)
                placements.append(
                    Placement(
                        case_ref=patient.case_ref,
                        request_id=request.request_id,
                        offer_id=offer.offer_id,
                        reason=None,
                        cost_sek=pc.cost_sek,
                        price_sek=pc.price_sek,
                        ancillary_cost_sek=pc.ancillary_cost_sek,
                        distance_km=pc.distance_km,
                        wait_days=wait,
                    )
                )
        return Allocation(tuple(placements), policy)


def _pair_cost(region: str, offer: Offer) -> PairCost:
    ancillary = travel_cost_sek(region, offer.region)
    return PairCost(price_sek=offer.price_sek, ancillary_cost_sek=ancillary,
                    distance_km=distance_km(region, offer.region),
                    cost_sek=round(offer.price_sek + ancillary, 2))


class _Feasible:
    """The offers rules 1-7 admit for one request, cheapest first (ties: offer_id), found lazily
    (a chunk at a time): a class stops reading once its offers cover every patient of the book."""

    _CHUNK = 64

    def __init__(self, request: Request, cheapest_first: list[Offer], scenario: Scenario) -> None:
        self.request, self.as_of, self.agreements = request, scenario.as_of, scenario.agreement_set
        self._candidates = iter(cheapest_first)
        self._found: list[Offer] = []

    def _admitted(self) -> Iterator[Offer]:
        i = 0
        while True:
            while i < len(self._found):
                yield self._found[i]
                i += 1
            chunk = list(islice(self._candidates, self._CHUNK))
            if not chunk:
                return
            self._found += [o for o in chunk if failing_rule(self.request, o, self.as_of, self.agreements) is None]

    def take(self, excluded: frozenset[str], patients: int, cost: Mapping[str, float]) -> tuple[Offer, ...]:
        """The cheapest admitted offers, less `excluded`, whose capacity covers `patients`, and
        any that cost the same as the last of them. No optimal or greedy allocation uses a
        dearer offer: a patient on one would leave a slot free among these, which is cheaper for
        the same patient. So a book with many offers open stays as small as its patients."""
        kept: list[Offer] = []
        room = 0
        for offer in self._admitted():
            if offer.offer_id in excluded:
                continue
            if room >= patients and cost[offer.offer_id] != cost[kept[-1].offer_id]:
                break
            kept.append(offer)
            room += offer.capacity
        return tuple(kept)


def prepare(scenario: Scenario) -> Book:
    patients = sum(len(r.patients) for r in scenario.requests)
    open_offers: dict[str, list[Offer]] = defaultdict(list)
    for offer in scenario.offers:
        if offer.window_end >= scenario.as_of:
            open_offers[offer.care_area].append(offer)
    # A request's cost of an offer depends on its region only: one order per (care area, region).
    orders: dict[tuple[str, str], tuple[list[Offer], dict[str, float]]] = {}
    costs: dict[tuple[str, str], PairCost] = {}
    classes: list[RequestClass] = []
    for request in scenario.requests:
        key = (request.care_area, request.region)
        if key not in orders:
            cost = {o.offer_id: round(o.price_sek + travel_cost_sek(request.region, o.region), 2)
                    for o in open_offers[request.care_area]}
            orders[key] = (sorted(open_offers[request.care_area], key=lambda o: (cost[o.offer_id], o.offer_id)),
                           cost)
        cheapest_first, cost = orders[key]
        feasible = _Feasible(request, cheapest_first, scenario)
        by_exclusion: dict[frozenset[str], RequestClass] = {}
        for patient in request.patients:
            rc = by_exclusion.get(patient.excluded_offers)
            if rc is None:
                kept = feasible.take(patient.excluded_offers, patients, cost)
                for offer in kept:
                    if (request.region, offer.offer_id) not in costs:
                        costs[request.region, offer.offer_id] = _pair_cost(request.region, offer)
                rc = by_exclusion[patient.excluded_offers] = RequestClass(
                    request, patient.excluded_offers, offers=kept
                )
                classes.append(rc)
            rc.patients.append(patient)
    return Book(scenario, classes, costs)
