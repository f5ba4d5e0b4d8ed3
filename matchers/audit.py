"""An independent check of an allocation against every rule of `contract/SCENARIOS.md`.

Deliberately re-implements the contract (distances, rules 1-7, costs) instead of calling the
solver's modules, so that a bug there cannot hide itself. It takes the plain JSON Lines row
dicts, so an allocation read back from a file or a database can be audited the same way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from matchers.model import Offer, Patient, Request, Scenario
from matchers.reference import default_tariff, regions

REASONS = ("no_feasible_offer", "capacity_exhausted")


@dataclass(frozen=True, slots=True)
class AuditSummary:
    patients: int
    placed: int
    wait_days: int
    cost_sek: float


def _distance(a: str, b: str) -> float:
    if a == b:
        return 0.0
    ra, rb = regions()[a], regions()[b]
    la, lb = math.radians(ra.lat), math.radians(rb.lat)
    h = (
        math.sin((lb - la) / 2) ** 2
        + math.cos(la) * math.cos(lb) * math.sin(math.radians(rb.lon - ra.lon) / 2) ** 2
    )
    return round(2 * 6371.0 * math.asin(math.sqrt(h)), 1)


def _pair_cost(request: Request, offer: Offer) -> float:
    t = default_tariff()
    d = _distance(request.region, offer.region)
    travel = t.round_trips_per_patient * 2 * d * t.per_km_sek
    if d > t.overnight_threshold_km:
        travel += t.nights_when_over_threshold * t.night_sek
    return offer.price_sek + travel


def _allowed(
    scenario: Scenario, request: Request, offer: Offer, agreed_pairs: set[tuple[str, str, str]]
) -> bool:
    as_of = scenario.as_of
    agreed = (request.region, offer.region, request.care_area) in agreed_pairs
    return (
        offer.care_area == request.care_area
        and offer.window_end >= as_of
        and request.window_end >= as_of
        and max(offer.window_start, request.window_start) <= min(offer.window_end, request.window_end)
        and (request.max_price_sek is None or offer.price_sek <= request.max_price_sek)
        and (
            request.max_travel_km is None or _distance(request.region, offer.region) <= request.max_travel_km
        )
        and offer.region not in request.excluded_regions
        and (not request.requires_agreement or offer.region == request.region or agreed)
    )


def audit_allocation(
    scenario: Scenario, rows: Iterable[Mapping[str, Any]], require_maximal: bool = True
) -> list[str]:
    """Every breach of the contract found in `rows` (empty when the allocation is valid).

    With `require_maximal`, a patient left out as `capacity_exhausted` while a feasible offer still
    has room is a breach too (no sensible policy leaves such a seat empty).
    """
    rows = list(rows)
    problems: list[str] = []
    offers = {o.offer_id: o for o in scenario.offers}
    owner: dict[str, tuple[Request, Patient]] = {
        p.case_ref: (r, p) for r in scenario.requests for p in r.patients
    }
    seen: Counter[str] = Counter()
    used: Counter[str] = Counter()
    unplaced: list[tuple[Request, Patient]] = []
    feasible_cache: dict[tuple[str, str], bool] = {}
    agreed_pairs = {(a.purchaser, a.provider, a.care_area) for a in scenario.agreements}

    def allowed(request: Request, offer: Offer, patient: Patient) -> bool:
        key = (request.request_id, offer.offer_id)
        if key not in feasible_cache:
            feasible_cache[key] = _allowed(scenario, request, offer, agreed_pairs)
        return feasible_cache[key] and offer.offer_id not in patient.excluded_offers

    for n, row in enumerate(rows):
        where = f"row {n + 1}"
        missing = [k for k in ("case_ref", "request_id", "offer_id", "reason") if k not in row]
        if missing:
            problems.append(f"{where}: missing keys {missing}")
            continue
        case_ref = row["case_ref"]
        seen[case_ref] += 1
        if case_ref not in owner:
            problems.append(f"{where}: unknown case_ref {case_ref!r}")
            continue
        request, patient = owner[case_ref]
        if row["request_id"] != request.request_id:
            problems.append(f"{where}: {case_ref} belongs to {request.request_id}, not {row['request_id']}")
        offer_id, reason = row["offer_id"], row["reason"]
        if offer_id is None:
            if reason not in REASONS:
                problems.append(f"{where}: {case_ref} not placed with invalid reason {reason!r}")
            unplaced.append((request, patient))
            continue
        if reason is not None:
            problems.append(f"{where}: {case_ref} placed but has reason {reason!r}")
        offer = offers.get(offer_id)
        if offer is None:
            problems.append(f"{where}: unknown offer {offer_id!r}")
            continue
        used[offer_id] += 1
        if not allowed(request, offer, patient):
            problems.append(f"{where}: {case_ref} of {request.request_id} may not take {offer_id}")
        if "cost_sek" in row and abs(float(row["cost_sek"]) - _pair_cost(request, offer)) > 0.01:
            problems.append(f"{where}: cost_sek {row['cost_sek']} != {_pair_cost(request, offer):.2f}")

    for case_ref, count in seen.items():
        if count > 1:
            problems.append(f"{case_ref} appears {count} times")
    for case_ref in owner.keys() - seen.keys():
        problems.append(f"{case_ref} is missing from the allocation")
    for offer_id, count in used.items():
        if count > offers[offer_id].capacity:
            problems.append(f"offer {offer_id} over capacity: {count} > {offers[offer_id].capacity}")

    reason_of = {row.get("case_ref"): row.get("reason") for row in rows}
    by_request: dict[str, list[Offer]] = {}
    for request, patient in unplaced:
        if request.request_id not in by_request:
            by_request[request.request_id] = [
                o for o in scenario.offers if _allowed(scenario, request, o, agreed_pairs)
            ]
        reachable = [o for o in by_request[request.request_id] if o.offer_id not in patient.excluded_offers]
        expected = "capacity_exhausted" if reachable else "no_feasible_offer"
        got = reason_of.get(patient.case_ref)
        if got != expected:
            problems.append(f"{patient.case_ref}: reason {got!r}, expected {expected!r}")
        if require_maximal:
            room = [o.offer_id for o in reachable if used[o.offer_id] < o.capacity]
            if room:
                problems.append(f"{patient.case_ref} left out while feasible offer {room[0]} has room")
    return problems


def summarize(scenario: Scenario, rows: Iterable[Mapping[str, Any]]) -> AuditSummary:
    """Placed patients, their wait days and total cost, recomputed from the scenario alone."""
    offers = {o.offer_id: o for o in scenario.offers}
    owner = {p.case_ref: (r, p) for r in scenario.requests for p in r.patients}
    placed = wait = 0
    cost = 0.0
    for row in rows:
        if row["offer_id"] is None:
            continue
        request, patient = owner[row["case_ref"]]
        placed += 1
        wait += max(0, (scenario.as_of - patient.waiting_since).days)
        cost += _pair_cost(request, offers[row["offer_id"]])
    return AuditSummary(scenario.patient_count, placed, wait, round(cost, 2))
