"""Domain rules on offers, requests and agreements, on top of the structural ones.

The structural rules (types, shapes) live with whoever parses: `events.payloads` on the bus,
`matchers.scenario` for files. The rules here need the domain's reference data (region codes,
care areas) or look across items (unique ids). Each rule has one implementation, used both by the
scenario loader and by the intake worker, which can pass an `events.OfferPublished` /
`events.RequestPublished` payload or a `matchers.model` object alike (they share attribute names).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from matchers.reference import care_areas, regions


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: where (`item`, `field`), which (`rule`, a short machine word) and why."""

    item: str
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.item}.{self.field}" if self.field else self.item
        return f"{where}: {self.message} [{self.rule}]"


class OfferLike(Protocol):
    @property
    def offer_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def care_area(self) -> str: ...
    @property
    def capacity(self) -> int: ...
    @property
    def window_start(self) -> date: ...
    @property
    def window_end(self) -> date: ...
    @property
    def price_sek(self) -> float: ...


class RequestLike(Protocol):
    @property
    def request_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def care_area(self) -> str: ...
    @property
    def window_start(self) -> date: ...
    @property
    def window_end(self) -> date: ...
    @property
    def max_price_sek(self) -> float | None: ...
    @property
    def max_travel_km(self) -> float | None: ...
    @property
    def excluded_regions(self) -> Iterable[str]: ...


class AgreementLike(Protocol):
    @property
    def purchaser(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def care_area(self) -> str: ...


# --- single rules ----------------------------------------------------------------------------


def known_region(item: str, field: str, code: str) -> Violation | None:
    if code in regions():
        return None
    return Violation(item, field, "known_region", f"unknown region code {code!r}")


def known_care_area(item: str, field: str, care_area: str) -> Violation | None:
    if care_area in care_areas():
        return None
    known = ", ".join(care_areas())
    return Violation(item, field, "known_care_area", f"unknown care area {care_area!r} (known: {known})")


def positive_capacity(item: str, capacity: int) -> Violation | None:
    if capacity > 0:
        return None
    return Violation(
        item, "capacity", "positive_capacity", f"capacity must be greater than 0, got {capacity}"
    )


def non_negative(item: str, field: str, value: float | None) -> Violation | None:
    if value is None or value >= 0:
        return None
    return Violation(item, field, "non_negative", f"must not be negative, got {value}")


def window_order(item: str, start: date, end: date) -> Violation | None:
    if end >= start:
        return None
    return Violation(item, "window_end", "window_order", f"window_end {end} is before window_start {start}")


def unique_ids(kind: str, field: str, labelled_ids: Iterable[tuple[str, str]]) -> list[Violation]:
    """Duplicates among `(item label, id)` pairs; the first occurrence of an id is the valid one."""
    first_at: dict[str, str] = {}
    found: list[Violation] = []
    for label, ident in labelled_ids:
        if ident in first_at:
            found.append(
                Violation(
                    label, field, "unique_id", f"duplicate {kind} {ident!r} (first at {first_at[ident]})"
                )
            )
        else:
            first_at[ident] = label
    return found


# --- per item ----------------------------------------------------------------------------------


def _present(found: Iterator[Violation | None]) -> list[Violation]:
    return [v for v in found if v is not None]


def check_offer(offer: OfferLike, item: str | None = None) -> list[Violation]:
    """Domain violations of one offer (empty when it may go on the book)."""
    label = item or f"offer {offer.offer_id}"
    return _present(
        iter(
            (
                known_region(label, "region", offer.region),
                known_care_area(label, "care_area", offer.care_area),
                positive_capacity(label, offer.capacity),
                window_order(label, offer.window_start, offer.window_end),
                non_negative(label, "price_sek", offer.price_sek),
            )
        )
    )


def check_request(request: RequestLike, item: str | None = None) -> list[Violation]:
    """Domain violations of one request (its patients' structure is checked by the parser)."""
    label = item or f"request {request.request_id}"
    found = [
        known_region(label, "region", request.region),
        known_care_area(label, "care_area", request.care_area),
        window_order(label, request.window_start, request.window_end),
        non_negative(label, "max_price_sek", request.max_price_sek),
        non_negative(label, "max_travel_km", request.max_travel_km),
    ]
    found += [
        known_region(label, f"excluded_regions[{i}]", code) for i, code in enumerate(request.excluded_regions)
    ]
    return _present(iter(found))


def check_agreement(agreement: AgreementLike, item: str | None = None) -> list[Violation]:
    label = item or f"agreement {agreement.purchaser}->{agreement.provider} {agreement.care_area}"
    return _present(
        iter(
            (
                known_region(label, "purchaser", agreement.purchaser),
                known_region(label, "provider", agreement.provider),
                known_care_area(label, "care_area", agreement.care_area),
            )
        )
    )
