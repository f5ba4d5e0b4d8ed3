"""An agreement's free text names units and functions: a personal identity number in it is refused."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from events import AgreementEnded, Contact
from tests.agreements.terms import terms

PNR_DASHED, PNR12, SAMORDNING = "850709-9805", "19850709 9805", "8507699802"


@pytest.mark.parametrize("number", [PNR_DASHED, PNR12, SAMORDNING])
@pytest.mark.parametrize("where", ["unit_name", "price_terms", "contact_name", "contact_address"])
def test_a_personal_identity_number_in_agreement_text_is_refused_by_rule(where: str, number: str) -> None:
    text = f"Ögonkliniken {number}"
    with pytest.raises(ValidationError) as caught:
        if where == "contact_name":
            terms(unit_contact=Contact(name=text))
        elif where == "contact_address":
            terms(unit_contact=Contact(name="Ögonkliniken", address=text))
        else:
            terms(**{where: text})
    assert "no_personal_number" in str(caught.value)
    assert number not in str(caught.value).split("input_value")[0]  # the message names the rule, not the value


def test_an_agreement_id_holding_a_personal_identity_number_is_refused() -> None:
    with pytest.raises(ValidationError, match="no_personal_number"):
        AgreementEnded(agreement_id=f"NLL-{PNR_DASHED}", purchaser="25", ended_on=date(2026, 3, 1))


def test_phone_numbers_dates_and_prices_in_agreement_text_still_pass() -> None:
    made = terms(price_terms="9 800 kr per patient från 2026-01-01, efterkontroll ingår",
                 unit_contact=Contact(name="Ögonkliniken", phone="0920-28 40 00", address="Box 123, 971 89 Luleå"))
    assert made.unit_contact.address == "Box 123, 971 89 Luleå"
    assert AgreementEnded(agreement_id="NLL-2026-001", purchaser="25", ended_on=date(2026, 3, 1)).agreement_id
