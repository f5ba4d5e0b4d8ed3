"""An agreement's lifecycle (draft → registered → ended) and who may change it: the pure rules."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from events import AgreementRegistered
from marketplace.agreements import AgreementRefused, AgreementStatus, draft, end, register, register_triple, update
from marketplace.agreements.hsa import hsa_id_problem
from tests.agreements.terms import terms


def test_draft_register_end_gives_three_versions_and_counts_only_while_registered_and_valid():
    drafted = draft(None, "A1", "25", terms(), actor="25")
    assert drafted is not None
    a = drafted.agreement
    assert (a.status, a.version, drafted.event_type) == (AgreementStatus.DRAFT, 1, "agreement.drafted")
    assert not a.in_force_on(date(2026, 6, 1))  # a draft counts for nothing

    registered = register(a, "A1", "25", None, actor="25")
    assert registered is not None
    a = registered.agreement
    assert (a.status, a.version, registered.event_type) == (AgreementStatus.REGISTERED, 2, "agreement.registered")
    assert a.in_force_on(date(2026, 1, 1)) and a.in_force_on(date(2026, 12, 31))
    assert not a.in_force_on(date(2025, 12, 31)) and not a.in_force_on(date(2027, 1, 1))

    ended = end(a, "A1", "25", date(2026, 6, 1), actor="25")
    assert ended is not None
    a = ended.agreement
    assert (a.status, a.version, a.ended_on) == (AgreementStatus.ENDED, 3, date(2026, 6, 1))
    assert a.in_force_on(date(2026, 5, 31))
    assert not a.in_force_on(date(2026, 6, 1))  # the day it ends it no longer counts


@pytest.mark.parametrize("step", ["draft", "register", "update", "end"])
def test_only_the_purchasing_region_may_change_its_agreement(step):
    own = register(None, "A1", "25", terms(), actor="25")
    assert own is not None
    current = own.agreement
    other = "01"  # the provider itself may not either
    with pytest.raises(AgreementRefused) as refused:
        match step:
            case "draft":
                draft(None, "A2", "25", terms(), actor=other)
            case "register":
                register(current, "A1", "25", terms(price_sek=1.0), actor=other)
            case "update":
                update(current, "A1", "25", terms(price_sek=1.0), actor=other)
            case "end":
                end(current, "A1", "25", date(2026, 6, 1), actor=other)
    assert (refused.value.field, refused.value.rule) == ("producer", "producer_is_purchaser")


def test_a_region_cannot_take_over_another_regions_agreement_by_naming_itself_purchaser():
    own = register(None, "A1", "25", terms(), actor="25")
    assert own is not None
    with pytest.raises(AgreementRefused) as refused:
        end(own.agreement, "A1", "24", date(2026, 6, 1), actor="24")
    assert refused.value.rule == "owner"


def test_the_same_terms_again_change_nothing_and_new_terms_make_a_new_version():
    first = register(None, "A1", "25", terms(), actor="25")
    assert first is not None
    assert register(first.agreement, "A1", "25", terms(), actor="25") is None
    revised = register(first.agreement, "A1", "25", terms(price_sek=9900.0), actor="25")
    assert revised is not None
    assert (revised.event_type, revised.agreement.version) == ("agreement.updated", 2)
    assert revised.agreement.terms is not None and revised.agreement.terms.price_sek == 9900.0


def test_steps_out_of_order_are_refused_with_their_rule():
    d = draft(None, "A1", "25", terms(), actor="25")
    assert d is not None
    with pytest.raises(AgreementRefused, match="draft") as refused:
        end(d.agreement, "A1", "25", date(2026, 6, 1), actor="25")
    assert refused.value.rule == "registered"
    r = register(d.agreement, "A1", "25", None, actor="25")
    assert r is not None
    with pytest.raises(AgreementRefused) as refused:
        draft(r.agreement, "A1", "25", terms(price_sek=1.0), actor="25")
    assert refused.value.rule == "still_draft"
    with pytest.raises(AgreementRefused) as refused:
        end(r.agreement, "A1", "25", date(2025, 6, 1), actor="25")
    assert refused.value.rule == "ended_in_validity"
    e = end(r.agreement, "A1", "25", date(2026, 6, 1), actor="25")
    assert e is not None
    assert end(e.agreement, "A1", "25", date(2026, 6, 1), actor="25") is None  # ending again: no change
    for step in (lambda: update(e.agreement, "A1", "25", terms(price_sek=1.0), actor="25"),
                 lambda: register(e.agreement, "A1", "25", terms(price_sek=1.0), actor="25")):
        with pytest.raises(AgreementRefused) as refused:
            step()
        assert refused.value.rule == "not_ended"
    with pytest.raises(AgreementRefused) as refused:
        register(None, "A9", "25", None, actor="25")
    assert refused.value.rule == "known_agreement"


@pytest.mark.parametrize(("change", "field", "rule"), [
    ({"unit_hsa_id": "SE2321000017-KAT01"}, "terms.unit_hsa_id", "hsa_id"),  # wrong check digit
    ({"unit_hsa_id": "KAT01"}, "terms.unit_hsa_id", "hsa_id"),
    ({"care_areas": ("hip-replacement",)}, "terms.care_areas.0", "known_care_area"),
    ({"provider": "25"}, "terms.provider", "provider_is_other_region"),
    ({"provider": "02"}, "terms.provider", "known_region"),
])
def test_terms_are_checked_against_the_reference_data(change, field, rule):
    with pytest.raises(AgreementRefused) as refused:
        register(None, "A1", "25", terms(**change), actor="25")
    assert (refused.value.field, refused.value.rule) == (field, rule)


def test_hsa_ids_are_checked_with_the_organisation_numbers_check_digit():
    assert hsa_id_problem("SE2321000016-A1B2C") is None
    assert hsa_id_problem("SE2321000230-KAT9") is None
    assert "not valid" in (hsa_id_problem("SE2321000015-A1B2C") or "")
    assert "not an HSA-id" in (hsa_id_problem("SE232100-0016-A1") or "")


def test_the_original_triple_still_registers_an_open_ended_agreement():
    payload = AgreementRegistered.model_validate({"purchaser": "23", "provider": "18", "care_area": "cataract"})
    change = register_triple(None, payload.purchaser, "18", "cataract", actor="23")
    assert change is not None
    assert change.agreement.care_areas == ("cataract",) and change.agreement.in_force_on(date(2030, 1, 1))
    assert register_triple(change.agreement, "23", "18", "cataract", actor="23") is None
    with pytest.raises(AgreementRefused):
        register_triple(None, "23", "18", "cataract", actor="18")


def test_the_registered_payload_takes_one_form_or_the_other():
    with pytest.raises(ValidationError, match="agreement_form"):
        AgreementRegistered.model_validate({"purchaser": "23", "provider": "18"})
    with pytest.raises(ValidationError, match="agreement_form"):
        AgreementRegistered.model_validate({"purchaser": "23", "agreement_id": "A", "care_area": "cataract"})
    with pytest.raises(ValidationError, match="validity_order"):
        terms(valid_from=date(2026, 2, 1), valid_to=date(2026, 1, 1))
