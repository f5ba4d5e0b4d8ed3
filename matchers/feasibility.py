"""Which offers a patient may take: rules 1-7 of `contract/SCENARIOS.md`, and why not.

`failing_rule` is the one implementation of the rules; it is cheap (no text is built) so the
solvers can call it for every (request, offer) pair. `explain_rule` turns a failing rule into the
sentence a care navigator reads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container
from dataclasses import dataclass
from datetime import date
from enum import IntEnum

from matchers.geo import distance_km
from matchers.model import Agreement, Offer, Request, Scenario


class Rule(IntEnum):
    """The contract's rules, numbered as in the contract; the name is the machine word."""

    care_area = 1
    expired_offer = 2
    expired_request = 3  # also rule 2 of the contract: split so the explanation says which side
    window_overlap = 4
    max_price = 5
    max_travel = 6
    excluded_region = 7
    agreement = 8

    @property
    def contract_rule(self) -> int:
        """The rule's number in the contract (both expiry checks are its rule 2)."""
        return self.value if self.value <= 2 else self.value - 1


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Why one offer is out of reach of one request."""

    request_id: str
    offer_id: str
    rule: Rule
    text: str


def failing_rule(
    request: Request, offer: Offer, as_of: date, agreements: Container[Agreement]
) -> Rule | None:
    """The first rule (in contract order) that forbids `request`'s patients to take `offer`."""
    if offer.care_area != request.care_area:
        return Rule.care_area
    if offer.window_end < as_of:
        return Rule.expired_offer
    if request.window_end < as_of:
        return Rule.expired_request
    if max(offer.window_start, request.window_start) > min(offer.window_end, request.window_end):
        return Rule.window_overlap
    if request.max_price_sek is not None and offer.price_sek > request.max_price_sek:
        return Rule.max_price
    if (
        request.max_travel_km is not None
        and distance_km(request.region, offer.region) > request.max_travel_km
    ):
        return Rule.max_travel
    if offer.region in request.excluded_regions:
        return Rule.excluded_region
    if (
        request.requires_agreement
        and offer.region != request.region
        and Agreement(request.region, offer.region, request.care_area) not in agreements
    ):
        return Rule.agreement
    return None


def format_number(value: float, decimals: int = 2) -> str:
    """Swedish-style grouping with a space: 12000 -> '12 000', 1106.8 -> '1 106.8'."""
    if value == int(value):
        return f"{int(value):,}".replace(",", " ")
    text = f"{value:,.{decimals}f}".rstrip("0").rstrip(".")
    return text.replace(",", " ")


def explain_rule(rule: Rule, request: Request, offer: Offer, as_of: date) -> str:
    match rule:
        case Rule.care_area:
            return f"care area {offer.care_area} != {request.care_area}"
        case Rule.expired_offer:
            return f"offer expired {offer.window_end} < as of {as_of}"
        case Rule.expired_request:
            return f"request expired {request.window_end} < as of {as_of}"
        case Rule.window_overlap:
            return (
                f"windows do not overlap: offer {offer.window_start}..{offer.window_end}, "
                f"request {request.window_start}..{request.window_end}"
            )
        case Rule.max_price:
            assert request.max_price_sek is not None
            return f"price {format_number(offer.price_sek)} > max {format_number(request.max_price_sek)}"
        case Rule.max_travel:
            assert request.max_travel_km is not None
            distance = distance_km(request.region, offer.region)
            return f"distance {format_number(distance, 1)} km > {format_number(request.max_travel_km, 1)}"
        case Rule.excluded_region:
            return f"region {offer.region} excluded"
        case Rule.agreement:
            return f"no agreement {request.region} -> {offer.region}"


def exclusion(
    request: Request, offer: Offer, as_of: date, agreements: Container[Agreement]
) -> Exclusion | None:
    rule = failing_rule(request, offer, as_of, agreements)
    if rule is None:
        return None
    return Exclusion(request.request_id, offer.offer_id, rule, explain_rule(rule, request, offer, as_of))


def why_infeasible(scenario: Scenario, request: Request, offer: Offer) -> str | None:
    """None when `request`'s patients may take `offer`, else the first failing rule's explanation."""
    found = exclusion(request, offer, scenario.as_of, scenario.agreement_set)
    return None if found is None else found.text


def feasible_offers(scenario: Scenario) -> dict[str, tuple[Offer, ...]]:
    """Per request id, the offers rules 1-7 admit, in the scenario's offer order.

    Only offers of the request's care area are tried, and expired offers are dropped once for all.
    """
    as_of, agreements = scenario.as_of, scenario.agreement_set
    by_area: dict[str, list[Offer]] = defaultdict(list)
    for offer in scenario.offers:
        if offer.window_end >= as_of:
            by_area[offer.care_area].append(offer)
    return {
        r.request_id: tuple(
            o for o in by_area.get(r.care_area, ()) if failing_rule(r, o, as_of, agreements) is None
        )
        for r in scenario.requests
    }
