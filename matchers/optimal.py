"""Optimal clearing as one min-cost max-flow per care area, over aggregated groups.

The contract's objective is lexicographic: most patients, then most wait days, then least cost.
The network, per care area (areas never share an offer, so they are independent books):

    source --(class, wait_days) group: cap = patients in it, cost = -wait' * M--> class
    class  --feasible pair: cap = patients of the class, cost = cost'-->            offer
    offer  --cap = capacity, cost 0-->                                              sink

Groups are parallel source->class arcs, so the network has one node per class and per offer and
one arc per group and per feasible pair: it grows with those, never with patients x offers.

A maximum flow gives objective 1. Among maximum flows the flow value F is fixed, so shifting all
wait days by the smallest (wait' = wait - min) and all pair costs by the cheapest (cost' = cost -
min) changes the objective by a constant, and keeps the numbers small. Costs are exact integers
(in öre, tenths or whole kronor, whichever is the coarsest exact unit). With M greater than any
difference of total cost among max flows (F * max cost' + 1), one more wait day always
outweighs any cost saving: min-cost is then exactly objectives 2 and 3 in that order.

"Wait days" above is a patient's priority under the round's `Objective` (matchers/objective.py):
the wait days themselves under the contract, plus a days-to-breach term with pre-breach matching.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import numpy as np
from ortools.graph.python import min_cost_flow

from matchers.allocation import Allocation
from matchers.book import Book, RequestClass
from matchers.model import Offer, Patient
from matchers.objective import CONTRACT, Objective

# OR-tools scales costs by (nodes + 1) in its cost-scaling algorithm and sums cost * flow in int64;
# stay well below 2**63 on both counts.
_INT64_HEADROOM = 2**62


class CostRangeError(ArithmeticError):
    """The exact lexicographic objective would not fit in int64 for this book."""


def _exact_unit(amounts: list[float]) -> int:
    """The smallest factor (1, 10 or 100) turning every amount into an integer without rounding."""
    for unit in (1, 10, 100):
        if all(abs(a * unit - round(a * unit)) < 1e-6 for a in amounts):
            return unit
    return 100  # amounts are already rounded to the öre by `geo.travel_cost_sek`


def _solve_area(book: Book, classes: list[RequestClass], objective: Objective = CONTRACT) -> dict[str, Offer]:
    as_of = book.scenario.as_of
    offer_index: dict[str, int] = {}
    offers: list[Offer] = []
    for rc in classes:
        for o in rc.offers:
            if o.offer_id not in offer_index:
                offer_index[o.offer_id] = len(offers)
                offers.append(o)
    if not offers:
        return {}

    pair_costs = [book.cost(rc.request, o).cost_sek for rc in classes for o in rc.offers]
    unit = _exact_unit(pair_costs)
    cost_units = [round(c * unit) for c in pair_costs]
    cheapest, dearest = min(cost_units), max(cost_units)

    groups: list[tuple[int, int, int]] = []  # (class index, wait days, patients)
    for ci, rc in enumerate(classes):
        if not rc.offers:
            continue
        counts: dict[int, int] = defaultdict(int)
        for p in rc.patients:
            counts[objective.priority(p, as_of)] += 1
        groups.extend((ci, w, n) for w, n in sorted(counts.items(), reverse=True))
    if not groups:
        return {}
    least_wait = min(w for _, w, _ in groups)
    most_wait = max(w for _, w, _ in groups)
    patients = sum(n for _, _, n in groups)
    max_flow = min(patients, sum(o.capacity for o in offers))
    big_m = max_flow * (dearest - cheapest) + 1
    largest_arc_cost = max((most_wait - least_wait) * big_m, dearest - cheapest)
    nodes = 2 + len(classes) + len(offers)
    if largest_arc_cost * (nodes + 1) >= _INT64_HEADROOM or largest_arc_cost * max_flow >= _INT64_HEADROOM:
        raise CostRangeError(
            f"cost range too wide for an exact objective: wait spread {most_wait - least_wait} days, "
            f"cost spread {dearest - cheapest} (1/{unit} SEK), {max_flow} placements"
        )

    source, sink = 0, 1
    class_node = 2
    offer_node = 2 + len(classes)
    tails: list[int] = []
    heads: list[int] = []
    caps: list[int] = []
    costs: list[int] = []
    for ci, w, n in groups:
        tails.append(source)
        heads.append(class_node + ci)
        caps.append(n)
        costs.append(-(w - least_wait) * big_m)
    k = 0
    pairs: list[tuple[int, int]] = []
    for ci, rc in enumerate(classes):
        for o in rc.offers:
            oi = offer_index[o.offer_id]
            pairs.append((ci, oi))
            tails.append(class_node + ci)
            heads.append(offer_node + oi)
            caps.append(len(rc.patients))
            costs.append(cost_units[k] - cheapest)
            k += 1
    for oi, o in enumerate(offers):
        tails.append(offer_node + oi)
        heads.append(sink)
        caps.append(o.capacity)
        costs.append(0)

    smcf = min_cost_flow.SimpleMinCostFlow()
    arcs = smcf.add_arcs_with_capacity_and_unit_cost(
        np.asarray(tails, dtype=np.int32),
        np.asarray(heads, dtype=np.int32),
        np.asarray(caps, dtype=np.int64),
        np.asarray(costs, dtype=np.int64),
    )
    smcf.set_node_supply(source, patients)
    smcf.set_node_supply(sink, -patients)
    status = smcf.solve_max_flow_with_min_cost()
    if status != smcf.OPTIMAL:
        raise RuntimeError(f"min-cost flow did not reach an optimum: status {status}")
    flows = smcf.flows(np.asarray(arcs, dtype=np.int32))

    placed_by_wait: dict[tuple[int, int], int] = {}
    for g, (ci, w, _) in enumerate(groups):
        if flows[g]:
            placed_by_wait[ci, w] = int(flows[g])
    slots: dict[int, list[tuple[Offer, int]]] = defaultdict(list)
    for j, (ci, oi) in enumerate(pairs):
        f = int(flows[len(groups) + j])
        if f:
            slots[ci].append((offers[oi], f))
    assigned: dict[str, Offer] = {}
    for ci, rc in enumerate(classes):
        if ci in slots:
            assigned.update(_hand_out(rc, placed_by_wait, ci, slots[ci], as_of, objective))
    return assigned


def _hand_out(
    rc: RequestClass,
    placed_by_wait: dict[tuple[int, int], int],
    ci: int,
    slots: list[tuple[Offer, int]],
    as_of: date,
    objective: Objective = CONTRACT,
) -> dict[str, Offer]:
    """Turn a class's flows into concrete patients: per wait group the first by case_ref are placed;
    the chosen patients, longest waiters first, fill the class's offers in its stable order (all
    patients of a class cost the same at a given offer, so the order changes nothing in cost)."""
    ranked: list[Patient] = sorted(rc.patients, key=lambda p: (-objective.priority(p, as_of), p.case_ref))
    left = dict(placed_by_wait)
    chosen: list[Patient] = []
    for p in ranked:
        key = (ci, objective.priority(p, as_of))
        if left.get(key, 0) > 0:
            left[key] -= 1
            chosen.append(p)
    order = {o.offer_id: i for i, o in enumerate(rc.offers)}
    out: dict[str, Offer] = {}
    it = iter(chosen)
    for offer, count in sorted(slots, key=lambda s: order[s[0].offer_id]):
        for _ in range(count):
            out[next(it).case_ref] = offer
    return out


def clear_optimal(book: Book, objective: Objective = CONTRACT) -> Allocation:
    """The lexicographic optimum; `objective` says what a placed patient is worth in objective 2
    (the contract's wait days unless pre-breach matching weighs days to breach too)."""
    by_area: dict[str, list[RequestClass]] = defaultdict(list)
    for rc in book.classes:
        by_area[rc.request.care_area].append(rc)
    assigned: dict[str, Offer] = {}
    for area in sorted(by_area):
        assigned.update(_solve_area(book, by_area[area], objective))
    return book.allocation(assigned, "optimal")
