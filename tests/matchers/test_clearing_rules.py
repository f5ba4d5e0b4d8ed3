"""Hand-made books where the right answer is known: tie rules, reasons, excluded offers."""

from __future__ import annotations

from datetime import date

import pytest

from matchers.clearing import POLICIES, Policy, clear
from matchers.explanation import explain
from matchers.model import Patient
from matchers.optimal import CostRangeError

from .books import book, offer, request


def _where(allocation_rows: list[dict[str, object]]) -> dict[object, object]:
    return {row["case_ref"]: row["offer_id"] or row["reason"] for row in allocation_rows}


def test_longest_waiters_first_then_cheapest() -> None:
    s = book(
        offers=(offer(offer_id="dear", capacity=1, price_sek=11000), offer(offer_id="cheap", capacity=1)),
        requests=(
            request(
                patients=(
                    Patient("new", date(2026, 1, 1)),
                    Patient("old", date(2025, 1, 1)),
                    Patient("mid", date(2025, 6, 1)),
                )
            ),
        ),
    )
    for policy in POLICIES:
        assert _where(clear(s, policy).rows()) == {"old": "cheap", "mid": "dear", "new": "capacity_exhausted"}


def test_optimal_places_more_than_greedy_when_the_longest_waiter_blocks() -> None:
    # The tiny scenario's lesson: the longest waiter takes the only slot another region can reach.
    near = offer(offer_id="near", region="01", capacity=1)
    s = book(
        offers=(near, offer(offer_id="south", region="13", capacity=1, price_sek=9000)),
        requests=(
            request(
                request_id="uppsala",
                region="03",
                max_price_sek=None,
                max_travel_km=None,
                patients=(Patient("u1", date(2025, 5, 1)), Patient("u2", date(2025, 11, 20))),
            ),
            request(
                request_id="north",
                region="25",
                max_travel_km=900,
                patients=(Patient("n1", date(2025, 9, 15)),),
            ),
        ),
    )
    assert _where(clear(s, "optimal").rows()) == {"u1": "south", "u2": "capacity_exhausted", "n1": "near"}
    greedy = clear(s, "greedy")
    assert greedy.placed == 2 and greedy.wait_days < clear(s, "optimal").wait_days


def test_wait_days_never_below_zero() -> None:
    s = book(requests=(request(patients=(Patient("future", date(2026, 4, 1)),)),))
    (placement,) = clear(s).placements
    assert placement.offer_id == "off-1" and placement.wait_days == 0


def test_reasons() -> None:
    s = book(
        offers=(offer(capacity=1),),
        requests=(
            request(patients=(Patient("a", date(2025, 1, 1)), Patient("b", date(2025, 2, 1)))),
            request(
                request_id="knee", care_area="knee-replacement", patients=(Patient("k", date(2025, 1, 1)),)
            ),
        ),
    )
    assert _where(clear(s).rows()) == {"a": "off-1", "b": "capacity_exhausted", "k": "no_feasible_offer"}


@pytest.mark.parametrize("policy", ["optimal", "greedy"])
def test_excluded_offers_are_honoured(policy: Policy) -> None:
    s = book(
        offers=(offer(offer_id="cheap", capacity=5), offer(offer_id="dear", capacity=5, price_sek=11000)),
        requests=(
            request(
                patients=(
                    Patient("keen", date(2025, 1, 1)),
                    Patient("declined-cheap", date(2025, 1, 1), frozenset({"cheap"})),
                    Patient("declined-both", date(2025, 1, 1), frozenset({"cheap", "dear"})),
                )
            ),
        ),
    )
    assert _where(clear(s, policy).rows()) == {
        "keen": "cheap",
        "declined-cheap": "dear",
        "declined-both": "no_feasible_offer",
    }


def test_excluded_offer_gives_the_seat_to_someone_else() -> None:
    s = book(
        offers=(offer(capacity=1),),
        requests=(
            request(
                patients=(
                    Patient("oldest-declined", date(2024, 1, 1), frozenset({"off-1"})),
                    Patient("younger", date(2025, 6, 1)),
                )
            ),
        ),
    )
    assert _where(clear(s).rows()) == {"oldest-declined": "no_feasible_offer", "younger": "off-1"}


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        clear(book(), "random")  # type: ignore[arg-type]


def test_explain_lists_each_offer_with_its_rule() -> None:
    s = book(
        offers=(
            offer(offer_id="full", capacity=1),
            offer(offer_id="pricey", price_sek=13500),
            offer(offer_id="far", region="13"),
            offer(offer_id="knee", care_area="knee-replacement"),
        ),
        requests=(
            request(
                max_travel_km=900, patients=(Patient("a", date(2025, 1, 1)), Patient("b", date(2025, 2, 1)))
            ),
        ),
    )
    allocation = clear(s)
    (found,) = explain(s, allocation)
    assert found.request_id == "req-1"
    assert [(p.case_ref, p.reason) for p in found.unplaced] == [("b", "capacity_exhausted")]
    assert [(v.offer_id, v.rule, v.text) for v in found.offers] == [
        ("full", "full", "feasible, 1 of 1 taken"),
        ("pricey", "max_price", "price 13 500 > max 12 000"),
        ("far", "max_travel", "distance 1 106.8 km > 900"),
    ]
    everything = explain(s, allocation, all_care_areas=True)[0].offers
    assert everything[-1].text == "care area knee-replacement != cataract"


def test_explain_reports_offers_the_patients_declined() -> None:
    s = book(requests=(request(patients=(Patient("a", date(2025, 1, 1), frozenset({"off-1"})),)),))
    (found,) = explain(s, clear(s))
    assert [(v.rule, v.declined_by) for v in found.offers] == [("declined", 1)]


def test_a_cost_range_beyond_int64_is_refused_not_rounded() -> None:
    # Prices no real offer has: the exact objective would overflow OR-tools' int64 costs.
    s = book(
        offers=(offer(offer_id="a", price_sek=0, capacity=1), offer(offer_id="b", price_sek=1e16, capacity=1)),
        requests=(
            request(
                max_price_sek=None,
                patients=(Patient("old", date(2024, 1, 1)), Patient("new", date(2026, 3, 1))),
            ),
        ),
    )
    with pytest.raises(CostRangeError, match="cost range too wide"):
        clear(s, "optimal")
