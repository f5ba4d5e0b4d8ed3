from __future__ import annotations

from datetime import date

import pytest

from matchers.feasibility import Rule, failing_rule, feasible_offers, format_number, why_infeasible
from matchers.model import Agreement, Offer, Request

from .books import AS_OF, book, offer, request


def _why(o: Offer, r: Request, agreements: tuple[Agreement, ...] = ()) -> str | None:
    return why_infeasible(book((o,), (r,), agreements), r, o)


def test_a_fitting_pair_is_feasible() -> None:
    assert _why(offer(), request()) is None


@pytest.mark.parametrize(
    ("o", "r", "rule", "text"),
    [
        (
            offer(care_area="knee-replacement"),
            request(),
            Rule.care_area,
            "care area knee-replacement != cataract",
        ),
        (
            offer(window_start=date(2026, 2, 1), window_end=date(2026, 2, 28)),
            request(),
            Rule.expired_offer,
            "offer expired 2026-02-28 < as of 2026-03-02",
        ),
        (
            offer(),
            request(window_start=date(2026, 1, 1), window_end=date(2026, 3, 1)),
            Rule.expired_request,
            "request expired 2026-03-01 < as of 2026-03-02",
        ),
        (
            offer(),
            request(window_start=date(2026, 4, 18), window_end=date(2026, 5, 29)),
            Rule.window_overlap,
            "windows do not overlap: offer 2026-03-09..2026-04-17, request 2026-04-18..2026-05-29",
        ),
        (offer(price_sek=13500), request(max_price_sek=12000), Rule.max_price, "price 13 500 > max 12 000"),
        (offer(region="13"), request(max_travel_km=900), Rule.max_travel, "distance 1 106.8 km > 900"),
        (offer(region="13"), request(excluded_regions=("13",)), Rule.excluded_region, "region 13 excluded"),
        (offer(region="13"), request(requires_agreement=True), Rule.agreement, "no agreement 25 -> 13"),
    ],
)
def test_each_rule_and_its_explanation(o: Offer, r: Request, rule: Rule, text: str) -> None:
    assert failing_rule(r, o, AS_OF, frozenset()) is rule
    assert _why(o, r) == text


def test_boundaries_are_inclusive() -> None:
    # Windows touching on one day overlap; price and distance equal to the limit are allowed.
    touching = request(window_start=date(2026, 4, 17))
    assert _why(offer(), touching) is None
    assert _why(offer(window_end=AS_OF, window_start=AS_OF), request()) is None
    assert _why(offer(price_sek=12000), request(max_price_sek=12000)) is None
    assert _why(offer(region="13"), request(max_travel_km=1106.8)) is None


def test_null_limits_mean_no_limit() -> None:
    assert _why(offer(price_sek=10**6, region="13"), request(max_price_sek=None, max_travel_km=None)) is None


def test_agreement_rule_accepts_own_region_or_an_agreement_for_the_care_area() -> None:
    r = request(requires_agreement=True)
    assert _why(offer(region="25"), r) is None
    assert _why(offer(region="13"), r, (Agreement("25", "13", "cataract"),)) is None
    assert _why(offer(region="13"), r, (Agreement("25", "13", "inguinal-hernia"),)) == "no agreement 25 -> 13"
    assert _why(offer(region="13"), r, (Agreement("13", "25", "cataract"),)) == "no agreement 25 -> 13"


def test_the_first_failing_rule_is_reported() -> None:
    o = offer(care_area="knee-replacement", price_sek=99999, region="13")
    assert _why(o, request(excluded_regions=("13",))) == "care area knee-replacement != cataract"
    assert _why(offer(price_sek=99999, region="13"), request(max_travel_km=10)) == "price 99 999 > max 12 000"


def test_feasible_offers_per_request_keep_book_order() -> None:
    offers = (offer(offer_id="b"), offer(offer_id="a", price_sek=99999), offer(offer_id="c", care_area="x"))
    r1, r2 = request(request_id="r1"), request(request_id="r2", max_price_sek=None)
    assert {k: [o.offer_id for o in v] for k, v in feasible_offers(book(offers, (r1, r2))).items()} == {
        "r1": ["b"],
        "r2": ["b", "a"],
    }


def test_number_format() -> None:
    assert format_number(12000) == "12 000"
    assert format_number(1106.8, 1) == "1 106.8"
    assert format_number(9800.5) == "9 800.5"
    assert format_number(5) == "5"
