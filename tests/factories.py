"""Synthetic market load shared by tests and the pipeline benchmark: many regions' offers and requests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from events import Envelope, OfferPublished, Patient, RequestPublished, new_envelope
from events.envelope import stable_event_id
from events.identifiers import safe_token
from matchers.reference import care_areas, regions


def market_events(run_id: str, count: int, *, requests_per_offer: int = 4, spare: int = 1,
                  today: date | None = None, areas: list[str] | None = None) -> Iterator[Envelope]:
    """`count` events of many regions: per care area in turn, one offer then `requests_per_offer`
    one-patient requests, each offer with room for them all plus `spare`, every pair feasible. The
    patients have waited 30 days, so no guarantee deadline falls due during the run: what is
    measured is offers and requests through intake and matching, not the deadline sweeper."""
    codes = sorted(regions())
    areas = areas or sorted(care_areas())
    start = (today or datetime.now(UTC).date()) + timedelta(days=1)
    end = start + timedelta(days=60)
    n = 0
    block = 0
    tag = safe_token(run_id.encode(), 8)  # the bus's ids have no vowels: the run's name becomes a token
    while n < count:
        area = areas[block % len(areas)]
        provider = codes[block % len(codes)]
        offer_id = f"off-{tag}-{block}"
        yield new_envelope(OfferPublished(offer_id=offer_id, region=provider,
                                          unit_hsa_id=f"SE23210000{provider}-UNIT",
                                          care_area=area, capacity=requests_per_offer + spare, window_start=start,
                                          window_end=end, price_sek=9000 + block % 7 * 100),
                           producer=provider, event_id=stable_event_id(run_id, "offer", block))
        n += 1
        for i in range(requests_per_offer):
            if n >= count:
                return
            home = codes[(block * requests_per_offer + i + 1) % len(codes)]
            request_id = f"req-{tag}-{block}-{i}"
            yield new_envelope(RequestPublished(
                request_id=request_id, region=home, care_area=area, window_start=start, window_end=end,
                patients=(Patient(case_ref=f"case-{tag}-{block}-{i}", waiting_since=start - timedelta(days=30)),)),
                producer=home, event_id=stable_event_id(run_id, "request", block, i))
            n += 1
        block += 1


def unplaceable_requests(run_id: str, patients: int, *, per_request: int = 10,
                         today: date | None = None) -> Iterator[Envelope]:
    """Requests for `patients` patients in all, `per_request` each, spread over every care area and
    region, that nothing can place: their price ceiling (1 SEK) is below every offer's price. They
    stay on their care area's book, which every round must read, while other patients come and go."""
    codes = sorted(regions())
    areas = sorted(care_areas())
    start = (today or datetime.now(UTC).date()) + timedelta(days=1)
    end = start + timedelta(days=60)
    tag = safe_token(run_id.encode(), 8)
    for n, first in enumerate(range(0, patients, per_request)):
        home = codes[n % len(codes)]
        request_id = f"req-{tag}-dp-{n}"
        yield new_envelope(RequestPublished(
            request_id=request_id, region=home, care_area=areas[n % len(areas)], window_start=start, window_end=end,
            max_price_sek=1,
            patients=tuple(Patient(case_ref=f"case-{tag}-dp-{n}-{i}", waiting_since=start - timedelta(days=30))
                           for i in range(min(per_request, patients - first)))),
            producer=home, event_id=stable_event_id(run_id, "deep", n))
