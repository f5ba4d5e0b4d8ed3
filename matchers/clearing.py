"""One clearing round: turn a scenario (the open book) into an allocation."""

from __future__ import annotations

from typing import Literal

from matchers.allocation import Allocation
from matchers.book import prepare
from matchers.greedy import clear_greedy
from matchers.model import Scenario
from matchers.objective import CONTRACT, Objective
from matchers.optimal import clear_optimal

Policy = Literal["optimal", "greedy"]
POLICIES: tuple[Policy, ...] = ("optimal", "greedy")


def clear(scenario: Scenario, policy: Policy = "optimal", objective: Objective = CONTRACT) -> Allocation:
    """Allocate every patient of `scenario`. Deterministic: the same book gives the same result.

    `optimal` maximises placed patients, then wait days of the placed, then minimises total cost;
    `greedy` serves the longest waiter first with the cheapest offer that has room.
    `objective` changes what optimal counts in objective 2 (pre-breach matching); greedy stays
    first come, first served.
    """
    book = prepare(scenario)
    if policy == "optimal":
        return clear_optimal(book, objective)
    if policy == "greedy":
        return clear_greedy(book)
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
