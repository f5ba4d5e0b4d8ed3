"""The book prepared for clearing: patients grouped into request classes, with the offers each
class may take and what each (request region, offer) pair costs.

A request class is a request plus one distinct `excluded_offers` set of its patients; usually a
request is one class. Solvers work on classes, never on patient x offer pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from matchers.allocation import CAPACITY_EXHAUSTED, NO_FEASIBLE_OFFER, Allocation, Placement
from matchers.feasibility import feasible_offers
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


def _enough(ordered: tuple[Offer, ...], costs: dict[tuple[str, str], PairCost], region: str,
            patients: int) -> tuple[Offer, ...]:
    """The cheapest offers of `ordered` whose capacity covers all `patients` of the book, and any
    that cost the same as the last of them. No optimal or greedy allocation uses a dearer offer:
    a patient on one would leave a slot free among these, which is cheaper for the same patient.
    A book with many offers open (capacity published ahead) stays as small as its patients."""
    room = 0
    for i, offer in enumerate(ordered):
        room += offer.capacity
        if room >= patients:
            last = costs[region, offer.offer_id].cost_sek
            end = i + 1
            while end < len(ordered) and costs[region, ordered[end].offer_id].cost_sek == last:
                end += 1
            return ordered[:end]
    return ordered


def prepare(scenario: Scenario) -> Book:
    feasible = feasible_offers(scenario)
    costs: dict[tuple[str, str], PairCost] = {}
    classes: list[RequestClass] = []
    patients = sum(len(r.patients) for r in scenario.requests)
    for request in scenario.requests:
        offers = feasible[request.request_id]
        for offer in offers:
            key = (request.region, offer.offer_id)
            if key not in costs:
                ancillary = travel_cost_sek(request.region, offer.region)
                costs[key] = PairCost(
                    price_sek=offer.price_sek,
                    ancillary_cost_sek=ancillary,
                    distance_km=distance_km(request.region, offer.region),
                    cost_sek=round(offer.price_sek + ancillary, 2),
                )
        ordered = tuple(
            sorted(offers, key=lambda o: (costs[request.region, o.offer_id].cost_sek, o.offer_id))
        )
        by_exclusion: dict[frozenset[str], RequestClass] = {}
        for patient in request.patients:
            rc = by_exclusion.get(patient.excluded_offers)
            if rc is None:
                kept = ordered
                if patient.excluded_offers:
                    kept = tuple(o for o in ordered if o.offer_id not in patient.excluded_offers)
                kept = _enough(kept, costs, request.region, patients)
                rc = by_exclusion[patient.excluded_offers] = RequestClass(
                    request, patient.excluded_offers, offers=kept
                )
                classes.append(rc)
            rc.patients.append(patient)
    return Book(scenario, classes, costs)
