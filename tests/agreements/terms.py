"""Agreement terms for tests: valid unless a test changes them."""

from __future__ import annotations

from datetime import date
from typing import Any

from events import AgreementTerms, Contact


def terms(**changes: Any) -> AgreementTerms:
    base: dict[str, Any] = {
        "provider": "01", "unit_hsa_id": "SE2321000016-KAT01", "unit_name": "Ögonkliniken Stockholm",
        "care_areas": ("cataract",), "valid_from": date(2026, 1, 1), "valid_to": date(2026, 12, 31),
        "price_sek": 9800.0, "price_terms": "per patient",
        "unit_contact": Contact(name="Ögonkliniken Stockholm", email="ogon@stockholm.example"),
        "region_contact": Contact(name="Vårdförmedlingen Norrbotten", phone="0920-28 40 00"),
    }
    base.update(changes)
    return AgreementTerms(**base)
