"""What a case costs whom, once care is performed.

The providing region invoices the home region the price locked at match time; nothing that
happens later (a new tariff, a re-priced offer) changes it. The ancillary costs and the patient's
co-payment (patientavgift) are recorded against the home region: it reimburses the patient's
travel and accommodation and collects the co-payment. Only the procedure line is on the
provider's invoice, so the case is settled when that invoice is paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from marketplace.lifecycle.holds import LockedMatch
from marketplace.lifecycle.money import ZERO, money

PATIENT = "patient"
"""The party name used for the patient on settlement lines (regions use their two-digit code)."""


class LineKind(StrEnum):
    PROCEDURE = "procedure"
    TRAVEL = "travel"
    ACCOMMODATION = "accommodation"
    CO_PAYMENT = "co_payment"


@dataclass(frozen=True)
class SettlementLine:
    kind: LineKind
    payer: str
    payee: str
    amount_sek: Decimal


@dataclass(frozen=True)
class Settlement:
    home_region: str
    providing_region: str
    lines: tuple[SettlementLine, ...]

    @classmethod
    def for_match(cls, match: LockedMatch, home_region: str, co_payment_sek: Decimal) -> Settlement:
        """The lines of a performed case. Zero-amount ancillary lines are left out."""
        lines = [SettlementLine(LineKind.PROCEDURE, home_region, match.providing_region,
                                money(match.price_sek))]
        if match.travel_sek:
            lines.append(SettlementLine(LineKind.TRAVEL, home_region, PATIENT, money(match.travel_sek)))
        if match.accommodation_sek:
            lines.append(SettlementLine(LineKind.ACCOMMODATION, home_region, PATIENT,
                                        money(match.accommodation_sek)))
        if co_payment_sek:
            lines.append(SettlementLine(LineKind.CO_PAYMENT, PATIENT, home_region, money(co_payment_sek)))
        return cls(home_region, match.providing_region, tuple(lines))

    def total(self, kind: LineKind) -> Decimal:
        return money(sum((line.amount_sek for line in self.lines if line.kind is kind), ZERO))

    @property
    def invoice_total_sek(self) -> Decimal:
        """What the providing region invoices the home region: the locked price."""
        return self.total(LineKind.PROCEDURE)

    @property
    def ancillary_sek(self) -> Decimal:
        return money(self.total(LineKind.TRAVEL) + self.total(LineKind.ACCOMMODATION))

    @property
    def home_region_net_cost_sek(self) -> Decimal:
        """Invoice plus ancillary costs, less the co-payment the home region collects."""
        return money(self.invoice_total_sek + self.ancillary_sek - self.total(LineKind.CO_PAYMENT))


@dataclass(frozen=True)
class CoPayments:
    """The patient's co-payment per home region; regions not listed pay `default_sek` (0)."""

    default_sek: Decimal = ZERO
    per_region: Mapping[str, Decimal] = field(default_factory=dict)

    def for_region(self, home_region: str) -> Decimal:
        return money(self.per_region.get(home_region, self.default_sek))
