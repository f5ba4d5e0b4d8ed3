"""First come, first served: the baseline the optimal clearing is measured against.

The longest waiter goes first (ties: case_ref) and takes the cheapest feasible offer that still
has room (cost = price + ancillary; ties: offer_id).
"""

from __future__ import annotations

from matchers.allocation import Allocation
from matchers.book import Book
from matchers.model import Offer


def clear_greedy(book: Book) -> Allocation:
    as_of = book.scenario.as_of
    room = {o.offer_id: o.capacity for o in book.scenario.offers}
    queue = sorted(
        ((p.wait_days(as_of), p.case_ref, i) for i, rc in enumerate(book.classes) for p in rc.patients),
        key=lambda t: (-t[0], t[1]),
    )
    # Offers only ever fill up, so each class keeps a cursor past the offers already full.
    cursor = [0] * len(book.classes)
    assigned: dict[str, Offer] = {}
    for _, case_ref, i in queue:
        offers = book.classes[i].offers
        k = cursor[i]
        while k < len(offers) and room[offers[k].offer_id] == 0:
            k += 1
        cursor[i] = k
        if k < len(offers):
            offer = offers[k]
            room[offer.offer_id] -= 1
            assigned[case_ref] = offer
    return book.allocation(assigned, "greedy")
