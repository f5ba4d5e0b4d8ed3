"""Why patients were not placed: per unplaced request, each offer and what keeps it out of reach.

Used by `nvf match --explain` and meant for an HTTP API: plain frozen values, no formatting
beyond the explanation sentences of `matchers.feasibility`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from matchers.allocation import Allocation, Placement
from matchers.feasibility import exclusion
from matchers.model import Scenario

FULL = "full"
DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class OfferVerdict:
    """One offer seen from one request. `rule` is a `feasibility.Rule` name, or `full` for a
    feasible offer with no room left; `declined_by` counts unplaced patients of the request who
    have this offer in their `excluded_offers`."""

    offer_id: str
    region: str
    rule: str
    text: str
    declined_by: int = 0


@dataclass(frozen=True, slots=True)
class RequestExplanation:
    request_id: str
    region: str
    care_area: str
    unplaced: tuple[Placement, ...]
    offers: tuple[OfferVerdict, ...]


def explain(
    scenario: Scenario, allocation: Allocation, all_care_areas: bool = False
) -> list[RequestExplanation]:
    """For each request with unplaced patients (scenario order): those patients with their reason,
    and every offer of the request's care area (or of all areas) with the rule excluding it."""
    taken = Counter(p.offer_id for p in allocation if p.offer_id is not None)
    unplaced_by_request: dict[str, list[Placement]] = {}
    for placement in allocation:
        if placement.offer_id is None:
            unplaced_by_request.setdefault(placement.request_id, []).append(placement)
    found: list[RequestExplanation] = []
    for request in scenario.requests:
        unplaced = unplaced_by_request.get(request.request_id)
        if not unplaced:
            continue
        unplaced_refs = {p.case_ref for p in unplaced}
        declines = Counter(
            offer_id
            for patient in request.patients
            if patient.case_ref in unplaced_refs
            for offer_id in patient.excluded_offers
        )
        verdicts: list[OfferVerdict] = []
        for offer in scenario.offers:
            if not all_care_areas and offer.care_area != request.care_area:
                continue
            ruled_out = exclusion(request, offer, scenario.as_of, scenario.agreement_set)
            declined = declines.get(offer.offer_id, 0)
            if ruled_out is not None:
                verdict = OfferVerdict(
                    offer.offer_id, offer.region, ruled_out.rule.name, ruled_out.text, declined
                )
            elif declined == len(unplaced):
                verdict = OfferVerdict(
                    offer.offer_id, offer.region, DECLINED, "declined by the patients", declined
                )
            else:
                used = taken.get(offer.offer_id, 0)
                text = f"feasible, {used} of {offer.capacity} taken"
                verdict = OfferVerdict(offer.offer_id, offer.region, FULL, text, declined)
            verdicts.append(verdict)
        found.append(
            RequestExplanation(
                request.request_id, request.region, request.care_area, tuple(unplaced), tuple(verdicts)
            )
        )
    return found
