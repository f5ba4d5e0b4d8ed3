"""A scenario (a snapshot of the book) as the events its regions would publish.

A scenario file keeps the offline contract's ids (any text, e.g. `off-A`, `req-uppsala`); the bus
takes only ids that cannot carry identity (`events.identifiers`). An id that already fits is
published as it is (the public medium, small and large scenarios' ids all do); one that does not
is replaced by `<kind>-<token>`, the token derived from the file's id, so the same file always
maps the same way and `BusIds.original` reads the allocation back in the file's ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from demo_regions.agreements import agreement_events
from events import (
    ClearingRoundRequested,
    Envelope,
    OfferPublished,
    Patient,
    RequestPublished,
    new_envelope,
)
from events.envelope import stable_event_id
from events.identifiers import is_identifier, safe_token
from matchers.model import Scenario


def bus_id(kind: str, scenario_id: str) -> str:
    """The bus's id for a scenario file's id of `kind` (off, req, case)."""
    if scenario_id.startswith(f"{kind}-") and is_identifier(scenario_id):
        return scenario_id
    return f"{kind}-{safe_token(f'{kind}/{scenario_id}'.encode(), 12)}"


@dataclass(frozen=True)
class BusIds:
    """The bus ids a scenario's items are published under, and the way back."""

    to_file: dict[str, str]

    @classmethod
    def of(cls, scenario: Scenario) -> BusIds:
        pairs = [(bus_id("off", o.offer_id), o.offer_id) for o in scenario.offers]
        for r in scenario.requests:
            pairs.append((bus_id("req", r.request_id), r.request_id))
            pairs += [(bus_id("case", p.case_ref), p.case_ref) for p in r.patients]
        return cls(dict(pairs))

    def original(self, bus: str | None) -> str | None:
        return None if bus is None else self.to_file.get(bus, bus)


def region_events(scenario: Scenario, *, run_id: str) -> Iterator[Envelope]:
    """Agreements, offers and requests, each published by its own region (under bus ids).

    Event ids are derived from `run_id` and the item, so republishing the same run is idempotent
    while another run of the same file gets new ids.
    """
    yield from agreement_events(scenario, run_id=run_id)
    for o in scenario.offers:
        yield new_envelope(
            OfferPublished(offer_id=bus_id("off", o.offer_id), region=o.region, unit_hsa_id=o.unit_hsa_id,
                           care_area=o.care_area,
                           capacity=o.capacity, window_start=o.window_start, window_end=o.window_end,
                           price_sek=o.price_sek),
            producer=o.region, event_id=stable_event_id(run_id, "offer", o.offer_id))
    for r in scenario.requests:
        yield new_envelope(
            RequestPublished(
                request_id=bus_id("req", r.request_id), region=r.region, care_area=r.care_area,
                window_start=r.window_start,
                window_end=r.window_end, max_price_sek=r.max_price_sek, max_travel_km=r.max_travel_km,
                excluded_regions=tuple(sorted(r.excluded_regions)), requires_agreement=r.requires_agreement,
                patients=tuple(Patient(case_ref=bus_id("case", p.case_ref), waiting_since=p.waiting_since)
                               for p in r.patients)),
            producer=r.region, event_id=stable_event_id(run_id, "request", r.request_id))


def clearing_requests(scenario: Scenario, *, run_id: str, policy: str = "optimal",
                      producer: str = "operator") -> list[Envelope]:
    """One clearing round per care area that has requests, as of the scenario's day."""
    areas = sorted({r.care_area for r in scenario.requests})
    return [
        new_envelope(ClearingRoundRequested(round_id=f"rnd-{_token(run_id)}-{safe_token(area.encode(), 6)}",
                                            care_area=area,
                                            as_of=scenario.as_of,
                                            policy=policy),
                     producer=producer, event_id=stable_event_id(run_id, "clearing", area))
        for area in areas
    ]


def _token(run_id: str) -> str:
    """`run_id` where it fits the bus's id alphabet (as `new_run_id`'s do), else a token of it."""
    return run_id if is_identifier(f"rnd-{run_id}") else safe_token(run_id.encode(), 10)


def new_run_id() -> str:
    """A run's id, in the alphabet of bus ids (it is part of the round ids)."""
    return safe_token(uuid.uuid4().bytes, 12)
