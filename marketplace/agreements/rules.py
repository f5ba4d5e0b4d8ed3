"""Rules on an agreement's terms that need reference data: known regions and care areas, a valid
HSA-id for the performing unit, a providing region other than the purchasing one."""

from __future__ import annotations

from events import AgreementTerms
from marketplace.agreements.hsa import hsa_id_problem
from matchers.validation import Violation, known_care_area, known_region


def check_terms(purchaser: str, terms: AgreementTerms, item: str = "agreement") -> list[Violation]:
    """Every broken rule of these terms (empty when they may be stored), fields named as in the payload."""
    found = [
        known_region(item, "purchaser", purchaser),
        known_region(item, "terms.provider", terms.provider),
        *(known_care_area(item, f"terms.care_areas.{i}", area) for i, area in enumerate(terms.care_areas)),
    ]
    if terms.provider == purchaser:
        found.append(Violation(item, "terms.provider", "provider_is_other_region",
                               "an agreement is with another region: provider equals purchaser"))
    problem = hsa_id_problem(terms.unit_hsa_id)
    if problem:
        found.append(Violation(item, "terms.unit_hsa_id", "hsa_id", problem))
    return [v for v in found if v is not None]
