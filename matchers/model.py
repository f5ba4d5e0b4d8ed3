"""The book of one clearing round: offers, requests with their waiting patients, agreements.

Plain frozen slotted dataclasses: a large book holds tens of thousands of patients, so these stay
light and carry no behaviour beyond what is intrinsic to the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class Offer:
    """A block of capacity. In the running marketplace `capacity` is the capacity still left."""

    offer_id: str
    region: str
    unit_hsa_id: str
    care_area: str
    capacity: int
    window_start: date
    window_end: date
    price_sek: float


@dataclass(frozen=True, slots=True)
class Patient:
    """A waiting patient, known only by a pseudonymous case reference.

    `excluded_offers` is not part of a scenario file: the running marketplace fills it so that a
    patient who declined (or was refused by) an offer is never proposed to it again.
    `breach_date` is the home region's predicted breach of the care guarantee, for a request
    published before it (pre-breach matching, `matchers.objective`); None leaves the contract's
    objective untouched.
    """

    case_ref: str
    waiting_since: date
    excluded_offers: frozenset[str] = frozenset()
    breach_date: date | None = None

    def wait_days(self, as_of: date) -> int:
        return max(0, (as_of - self.waiting_since).days)


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    region: str
    care_area: str
    window_start: date
    window_end: date
    max_price_sek: float | None
    max_travel_km: float | None
    excluded_regions: tuple[str, ...]
    requires_agreement: bool
    patients: tuple[Patient, ...]


@dataclass(frozen=True, slots=True)
class Agreement:
    """A care agreement (vårdavtal): `purchaser` may buy `care_area` from `provider`."""

    purchaser: str
    provider: str
    care_area: str


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    as_of: date
    agreements: tuple[Agreement, ...]
    offers: tuple[Offer, ...]
    requests: tuple[Request, ...]
    agreement_set: frozenset[Agreement] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Rule 7 asks "does this agreement exist" once per (request, offer) pair.
        object.__setattr__(self, "agreement_set", frozenset(self.agreements))

    @property
    def patient_count(self) -> int:
        return sum(len(r.patients) for r in self.requests)
