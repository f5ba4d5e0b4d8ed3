"""A proposed match is a hold on one slot of an offer; how long the hold waits for answers.

The hold waits first for the provider (default 48 hours from the proposal), then for the patient
(default 5 days from the provider's acceptance). The patient window starts at acceptance, not at
the moment the navigator makes the offer, so that a navigator who never gets round to offering
cannot keep the slot forever: every state has a clock.

Both windows are configurable per region. The provider window is looked up by the *providing*
region (it is their unit that must answer), the patient window by the *home* region (its
navigators talk to the patient). The deadline is fixed when the window opens and written into the
event, so a later change of policy does not move holds already running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from marketplace.lifecycle.money import ZERO

DEFAULT_PROVIDER_ANSWER = timedelta(hours=48)
DEFAULT_PATIENT_ANSWER = timedelta(days=5)


@dataclass(frozen=True)
class RegionHoldOverride:
    """A region's own windows; None keeps the default."""

    provider_answer: timedelta | None = None
    patient_answer: timedelta | None = None


@dataclass(frozen=True)
class HoldPolicy:
    provider_answer: timedelta = DEFAULT_PROVIDER_ANSWER
    patient_answer: timedelta = DEFAULT_PATIENT_ANSWER
    overrides: Mapping[str, RegionHoldOverride] = field(default_factory=dict)

    def __post_init__(self) -> None:
        windows = [self.provider_answer, self.patient_answer]
        for o in self.overrides.values():
            windows += [w for w in (o.provider_answer, o.patient_answer) if w is not None]
        if any(w <= timedelta(0) for w in windows):
            raise ValueError("hold windows must be positive")

    def provider_answer_window(self, providing_region: str) -> timedelta:
        o = self.overrides.get(providing_region)
        return o.provider_answer if o and o.provider_answer is not None else self.provider_answer

    def patient_answer_window(self, home_region: str) -> timedelta:
        o = self.overrides.get(home_region)
        return o.patient_answer if o and o.patient_answer is not None else self.patient_answer

    def provider_answer_due(self, providing_region: str, proposed_at: datetime) -> datetime:
        return proposed_at + self.provider_answer_window(providing_region)

    def patient_answer_due(self, home_region: str, provider_accepted_at: datetime) -> datetime:
        return provider_accepted_at + self.patient_answer_window(home_region)


@dataclass(frozen=True)
class LockedMatch:
    """The slot a case holds and the terms locked when it was proposed.

    The price is locked here and invoiced unchanged; travel and accommodation are the ancillary
    costs (kringkostnader) the matcher computed from the tariff, borne by the home region.
    """

    match_id: str
    offer_id: str
    providing_region: str
    unit_hsa_id: str
    price_sek: Decimal
    travel_sek: Decimal = ZERO
    accommodation_sek: Decimal = ZERO
    distance_km: float = 0.0
