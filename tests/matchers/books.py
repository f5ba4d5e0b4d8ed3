"""Small hand-made books for unit tests: one offer and one request that fit, tweaked per test."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from matchers.model import Agreement, Offer, Patient, Request, Scenario

AS_OF = date(2026, 3, 2)


def offer(**changes: Any) -> Offer:
    base = Offer(
        offer_id="off-1",
        region="01",
        unit_hsa_id="SE2321000016-A1B2C",
        care_area="cataract",
        capacity=2,
        window_start=date(2026, 3, 9),
        window_end=date(2026, 4, 17),
        price_sek=9800,
    )
    return replace(base, **changes)


def request(**changes: Any) -> Request:
    base = Request(
        request_id="req-1",
        region="25",
        care_area="cataract",
        window_start=date(2026, 3, 2),
        window_end=date(2026, 5, 29),
        max_price_sek=12000,
        max_travel_km=1200,
        excluded_regions=(),
        requires_agreement=False,
        patients=(Patient("case-1", date(2025, 10, 1)),),
    )
    return replace(base, **changes)


def book(
    offers: tuple[Offer, ...] = (),
    requests: tuple[Request, ...] = (),
    agreements: tuple[Agreement, ...] = (),
    as_of: date = AS_OF,
) -> Scenario:
    return Scenario("test", as_of, agreements, offers or (offer(),), requests or (request(),))
