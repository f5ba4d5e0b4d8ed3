"""The bodies: what each may carry, and the staged-release gate for referrals."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from events.payloads import CaseStateChanged
from notifiers.envelope import MessageHeader
from notifiers.identifiers import contains_personal_identity_number
from notifiers.message_types import (
    MESSAGE_TYPES,
    PATIENT_IDENTITY_FIELDS,
    Invoice,
    MatchNotice,
    Referral,
    ReferralAnswer,
    ReferralNotAllowed,
    build_referral,
)
from notifiers.receipts import Receipt


def _schema_fields(schema: dict[str, Any]) -> set[str]:
    """Every property name anywhere in a JSON schema, nested definitions included."""
    names: set[str] = set()
    for definition in (schema, *schema.get("$defs", {}).values()):
        names |= set(definition.get("properties", {}))
    return names


def test_a_match_notice_is_ids_only() -> None:
    schema = MatchNotice.model_json_schema()
    assert set(schema["properties"]) == {"match_id", "case_ref", "offer_id", "request_id"}
    assert not _schema_fields(schema) & PATIENT_IDENTITY_FIELDS
    assert schema["additionalProperties"] is False  # nothing can be slipped in beside the ids
    with pytest.raises(ValidationError):
        MatchNotice.model_validate({"match_id": "m", "case_ref": "c", "offer_id": "o", "request_id": "r",
                                    "personal_identity_number": "19121212-1212"})


@pytest.mark.parametrize("model", [MessageHeader, Receipt])
def test_nothing_readable_has_patient_identity(model: Any) -> None:
    assert not _schema_fields(model.model_json_schema()) & PATIENT_IDENTITY_FIELDS


def test_only_confidential_types_carry_identity() -> None:
    for name, cls in MESSAGE_TYPES.items():
        fields = _schema_fields(cls.model_json_schema())
        if fields & PATIENT_IDENTITY_FIELDS:
            assert cls.CARRIES_PATIENT_IDENTITY, name
    assert _schema_fields(Referral.model_json_schema()) & PATIENT_IDENTITY_FIELDS


def _state(to_state: str) -> CaseStateChanged:
    return CaseStateChanged(case_ref="CASE-1", from_state=None, to_state=to_state, version=3)


PATIENT: dict[str, Any] = dict(match_id="M-1", care_area="cataract", personal_identity_number="19121212-1212",
               given_name="Tolvan", family_name="Tolvansson", clinical_summary="Katarakt.")


@pytest.mark.parametrize("state", ["need_identified", "on_book", "match_proposed", "withdrawn", "performed"])
def test_a_referral_is_refused_before_the_provider_accepted(state: str) -> None:
    with pytest.raises(ReferralNotAllowed, match=state):
        build_referral(_state(state), **PATIENT)


@pytest.mark.parametrize("state", ["provider_accepted", "patient_accepted"])
def test_a_referral_is_built_once_the_provider_accepted(state: str) -> None:
    referral = build_referral(_state(state), **PATIENT)
    assert referral.case_ref == "CASE-1"
    assert referral.personal_identity_number == "19121212-1212"


def test_the_gate_can_be_made_stricter() -> None:
    with pytest.raises(ReferralNotAllowed):
        build_referral(_state("provider_accepted"), accepted_states=frozenset({"patient_accepted"}),
                       **PATIENT)


@pytest.mark.parametrize("pnr", ["19121212-1213", "121212-1212", "191212121212", "19121312-1212"])
def test_a_referral_needs_a_valid_personal_identity_number(pnr: str) -> None:
    with pytest.raises(ValidationError):
        Referral(case_ref="C", **{**PATIENT, "personal_identity_number": pnr})


def test_personal_identity_numbers_are_told_from_organisation_numbers() -> None:
    assert contains_personal_identity_number("pnr 19121212-1212 remiss")
    assert contains_personal_identity_number("121212+1212")
    assert contains_personal_identity_number("19701063-2391")  # samordningsnummer: day + 60
    assert not contains_personal_identity_number("232100-0016")
    assert not contains_personal_identity_number("19121212-1213")  # wrong check digit


def test_an_invoice_adds_up() -> None:
    lines = [{"kind": "care", "description": "Kataraktoperation", "amount_sek": "9800.00"},
             {"kind": "travel", "description": "Resa", "amount_sek": "1250.50"}]
    invoice = Invoice(invoice_id="I-1", match_id="M-1", case_ref="C-1", issued_on=date(2026, 4, 1),
                      due_on=date(2026, 5, 1), lines=lines, total_sek=Decimal("11050.50"))
    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice
    with pytest.raises(ValidationError, match="sum of the lines"):
        Invoice(invoice_id="I-1", match_id="M-1", case_ref="C-1", issued_on=date(2026, 4, 1),
                due_on=date(2026, 5, 1), lines=lines, total_sek=Decimal("11050.00"))
    with pytest.raises(ValidationError):
        Invoice(invoice_id="I-1", match_id="M-1", case_ref="C-1", issued_on=date(2026, 4, 1),
                due_on=date(2026, 5, 1), lines=[{**lines[0], "amount_sek": "-1"}], total_sek=Decimal("-1"))


def test_a_declined_referral_says_why() -> None:
    with pytest.raises(ValidationError, match="reason"):
        ReferralAnswer(match_id="M-1", case_ref="C-1", decision="declined")
    assert ReferralAnswer(match_id="M-1", case_ref="C-1", decision="declined", reason="Full").reason == "Full"
