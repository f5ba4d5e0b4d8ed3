"""The plain first-come-first-served loop that `nvf match` is measured against (`benchmarks.matching`).

What it does, exactly, in one fresh process (`python -m benchmarks.fcfs SCENARIO OUT [--capacity-first]`):

1. `json.load` the scenario file; no validation.
2. Queue every patient by arrival: `waiting_since`, then file order.
3. For each patient in that queue, scan the scenario's offers in file order and give the patient
   the first offer that rules 1-7 of the contract admit and that has a slot left. The rules are
   checked inline on the decoded dicts, in contract order (dates compared as ISO strings, distance
   and travel cost from the same hub-to-hub tables as the matcher, `matchers.geo`). By default the
   rules are checked before the capacity, as the contract reads; `--capacity-first` skips full
   offers before checking any rule, which is the same allocation for far less work.
4. Write one JSON line per patient (`json.dumps`), in file order: case_ref, request_id, offer_id,
   reason (`capacity_exhausted` when some offer admits the request, else `no_feasible_offer`),
   and cost_sek for a placed patient.

It is not optimal (it places whoever comes first, nothing more), and it does no durable work
beyond the output file: the same input, the same output format, the least machinery.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from matchers.geo import distance_km, travel_cost_sek


def fcfs(scenario: Path, out: Path, *, capacity_first: bool = False) -> int:
    """Run the loop; returns how many patients it placed."""
    with scenario.open(encoding="utf-8") as fh:
        book = json.load(fh)
    as_of = book["as_of"]
    agreements = {(a["purchaser"], a["provider"], a["care_area"]) for a in book.get("agreements", [])}
    offers: list[dict[str, Any]] = book["offers"]
    left = [o["capacity"] for o in offers]

    def admits(r: dict[str, Any], o: dict[str, Any]) -> bool:
        if o["care_area"] != r["care_area"] or o["window_end"] < as_of or r["window_end"] < as_of:
            return False
        if max(o["window_start"], r["window_start"]) > min(o["window_end"], r["window_end"]):
            return False
        if r.get("max_price_sek") is not None and o["price_sek"] > r["max_price_sek"]:
            return False
        if r.get("max_travel_km") is not None and distance_km(r["region"], o["region"]) > r["max_travel_km"]:
            return False
        if o["region"] in r.get("excluded_regions", ()):
            return False
        return not (r.get("requires_agreement") and o["region"] != r["region"]
                    and (r["region"], o["region"], r["care_area"]) not in agreements)

    requests: list[dict[str, Any]] = book["requests"]
    queue = sorted((p["waiting_since"], i, j) for i, r in enumerate(requests) for j, p in enumerate(r["patients"]))
    taken: dict[tuple[int, int], int] = {}
    for _, i, j in queue:
        r = requests[i]
        for k, o in enumerate(offers):
            if (left[k] and admits(r, o)) if capacity_first else (admits(r, o) and left[k]):
                left[k] -= 1
                taken[i, j] = k
                break
    with out.open("w", encoding="utf-8") as fh:
        for i, r in enumerate(requests):
            feasible: bool | None = None
            for j, p in enumerate(r["patients"]):
                slot = taken.get((i, j))
                row: dict[str, Any]
                if slot is None:
                    if feasible is None:
                        feasible = any(admits(r, o) for o in offers)
                    row = {"case_ref": p["case_ref"], "request_id": r["request_id"], "offer_id": None,
                           "reason": "capacity_exhausted" if feasible else "no_feasible_offer"}
                else:
                    o = offers[slot]
                    row = {"case_ref": p["case_ref"], "request_id": r["request_id"], "offer_id": o["offer_id"],
                           "reason": None,
                           "cost_sek": round(o["price_sek"] + travel_cost_sek(r["region"], o["region"]), 2)}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(taken)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fcfs", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--capacity-first", action="store_true", help="skip full offers before checking rules")
    args = parser.parse_args(argv)
    print(fcfs(args.scenario, args.out, capacity_first=args.capacity_first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
