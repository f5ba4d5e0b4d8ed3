"""A scenario (a snapshot of the book) as the events its regions would publish."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from events import (
    ClearingRoundRequested,
    Envelope,
    OfferPublished,
    Patient,
    RequestPublished,
    new_envelope,
)
from events.envelope import stable_event_id
from marketplace.demo_agreements import agreement_events
from matchers.model import Scenario


def region_events(scenario: Scenario, *, run_id: str) -> Iterator[Envelope]:
    """Agreements, offers and requests, each published by its own region.

    Event ids are derived from `run_id` and the item, so republishing the same run is idempotent
    while another run of the same file gets new ids.
    """
    yield from agreement_events(scenario, run_id=run_id)
    for o in scenario.offers:
        yield new_envelope(
            OfferPublished(offer_id=o.offer_id, region=o.region, unit_hsa_id=o.unit_hsa_id, care_area=o.care_area,
                           capacity=o.capacity, window_start=o.window_start, window_end=o.window_end,
                           price_sek=o.price_sek),
            producer=o.region, event_id=stable_event_id(run_id, "offer", o.offer_id))
    for r in scenario.requests:
        yield new_envelope(
            RequestPublished(
                request_id=r.request_id, region=r.region, care_area=r.care_area, window_start=r.window_start,
                window_end=r.window_end, max_price_sek=r.max_price_sek, max_travel_km=r.max_travel_km,
                excluded_regions=tuple(sorted(r.excluded_regions)), requires_agreement=r.requires_agreement,
                patients=tuple(Patient(case_ref=p.case_ref, waiting_since=p.waiting_since) for p in r.patients)),
            producer=r.region, event_id=stable_event_id(run_id, "request", r.request_id))


def clearing_requests(scenario: Scenario, *, run_id: str, policy: str = "optimal",
                      producer: str = "operator") -> list[Envelope]:
    """One clearing round per care area that has requests, as of the scenario's day."""
    areas = sorted({r.care_area for r in scenario.requests})
    return [
        new_envelope(ClearingRoundRequested(round_id=f"{run_id}:{area}", care_area=area, as_of=scenario.as_of,
                                            policy=policy),
                     producer=producer, event_id=stable_event_id(run_id, "clearing", area))
        for area in areas
    ]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
