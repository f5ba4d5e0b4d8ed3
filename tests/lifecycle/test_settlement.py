"""Price locked at match time, invoiced when care is performed; ancillary costs and the patient's
co-payment against the home region; settled when paid."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketplace.lifecycle import (
    CaseInvoiced,
    CaseSettled,
    CaseStatus,
    CoPayments,
    IllegalTransition,
    InvalidCommand,
    Invoice,
    LifecyclePolicy,
    LineKind,
    LockedMatch,
    PaymentRecorded,
    RecordPayment,
    Settlement,
    SettlementLine,
    decide,
    money,
)
from tests.lifecycle.journey import CASE, HOME, PROVIDER, Journey, happy_path, proposal, reach


def invoiced(policy: LifecyclePolicy | None = None, price: str = "9800") -> Journey:
    j = Journey(policy or LifecyclePolicy())
    for command, after, _ in happy_path()[:11]:
        j.do(proposal(price=price) if command.NAME == "propose_match" else command, after)
    j.do(Invoice(CASE, "inv-1"))
    return j


def test_settlement_lines_with_co_payment_per_region() -> None:
    policy = LifecyclePolicy(co_payments=CoPayments(per_region={HOME: Decimal("400")}))
    j = invoiced(policy)
    s = j.case.settlement
    assert s is not None
    assert s.lines == (
        SettlementLine(LineKind.PROCEDURE, HOME, PROVIDER, Decimal("9800.00")),
        SettlementLine(LineKind.TRAVEL, HOME, "patient", Decimal("1404.60")),
        SettlementLine(LineKind.ACCOMMODATION, HOME, "patient", Decimal("1200.00")),
        SettlementLine(LineKind.CO_PAYMENT, "patient", HOME, Decimal("400.00")),
    )
    assert s.invoice_total_sek == Decimal("9800.00")  # the provider invoices the locked price only
    assert s.home_region_net_cost_sek == Decimal("12004.60")


def test_co_payment_defaults_to_zero_and_zero_lines_are_left_out() -> None:
    assert CoPayments().for_region("03") == Decimal("0.00")
    match = LockedMatch("m", "o", "12", "u", Decimal("5000"))
    s = Settlement.for_match(match, "01", Decimal(0))
    assert [line.kind for line in s.lines] == [LineKind.PROCEDURE]
    assert s.home_region_net_cost_sek == Decimal("5000.00")


def test_the_invoice_carries_the_price_locked_at_match_time() -> None:
    j = invoiced(price="12345.675")
    invoice = j.history[-1]
    assert isinstance(invoice, CaseInvoiced)
    assert invoice.settlement.invoice_total_sek == Decimal("12345.68")  # rounded half-up to the öre


def test_partial_payments_add_up_and_the_case_settles_when_paid_in_full() -> None:
    j = invoiced()
    (first,) = j.do(RecordPayment(CASE, "p1", Decimal("4000")))
    assert isinstance(first, PaymentRecorded) and first.paid_total_sek == Decimal("4000.00")
    assert j.case.status is CaseStatus.INVOICED and j.case.outstanding_sek == Decimal("5800.00")
    with pytest.raises(InvalidCommand, match="exceeds"):
        decide(j.case, RecordPayment(CASE, "p2", Decimal("5800.01")), j.now)
    with pytest.raises(InvalidCommand, match="positive"):
        decide(j.case, RecordPayment(CASE, "p2", Decimal("0")), j.now)
    paid, settled = j.do(RecordPayment(CASE, "p2", Decimal("5800")))
    assert isinstance(paid, PaymentRecorded) and paid.amount_sek == Decimal("5800.00")
    assert isinstance(settled, CaseSettled) and settled.paid_total_sek == Decimal("9800.00")
    assert j.case.status is CaseStatus.SETTLED and j.case.outstanding_sek == 0


def test_a_free_procedure_settles_on_invoicing() -> None:
    j = invoiced(price="0")
    assert j.case.status is CaseStatus.SETTLED


def test_money_rounds_floats_through_their_text() -> None:
    assert money(0.1 + 0.2) == Decimal("0.30")
    assert money(740.4000000000001) == Decimal("740.40")
    with pytest.raises(ValueError):
        money(float("nan"))


def test_invoicing_needs_care_to_be_performed_and_followed_up() -> None:
    j = reach(CaseStatus.SCHEDULED)
    with pytest.raises(IllegalTransition):
        decide(j.case, Invoice(CASE, "inv-1"), j.now)
