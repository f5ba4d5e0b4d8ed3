"""The care agreements behind a scenario, as full agreements its purchasing regions register.

A scenario names its agreements as (purchaser, provider, care area). The demo fills in what a real
agreement says from the reference data: the performing units are the provider's units that offer
the care area in the scenario, each named for its clinic and the region's hub city; validity is
the scenario's year and the next; the price is the unit's offered price; the contacts are the
unit and the purchasing region's brokering function (synthetic addresses under `.example`, a
domain reserved for examples). A triple whose provider offers nothing in the area is registered
in the original triple form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import date

from events import AgreementRegistered, AgreementTerms, Contact, Envelope, new_envelope
from events.envelope import stable_event_id
from marketplace.agreements.hsa import hsa_id_problem
from matchers.model import Agreement, Scenario
from matchers.reference import regions

CLINICS = {"cataract": "Ögonkliniken", "inguinal-hernia": "Kirurgkliniken", "knee-replacement": "Ortopedkliniken"}
PRICE_TERMS = ("pre- and post-operative visits included; travel and overnight stays are paid by "
               "the purchasing region per the national tariff")


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")


def agreement_terms(scenario: Scenario, agreement: Agreement) -> list[tuple[str, AgreementTerms]]:
    """(agreement id, terms) per performing unit of this agreement; empty when the provider offers
    nothing in the care area (or names its units with ids that are not HSA-ids)."""
    orgs = regions()
    provider, purchaser = orgs[agreement.provider], orgs[agreement.purchaser]
    prices: dict[str, float] = {}
    for o in scenario.offers:
        if (o.region, o.care_area) == (agreement.provider, agreement.care_area) and not hsa_id_problem(o.unit_hsa_id):
            prices[o.unit_hsa_id] = min(prices.get(o.unit_hsa_id, o.price_sek), o.price_sek)
    clinic = CLINICS.get(agreement.care_area, "Kliniken")
    found = []
    for hsa_id, price in sorted(prices.items()):
        local = hsa_id.split("-", 1)[1]
        unit_name = f"{clinic} {provider.hub_city} ({local})"
        terms = AgreementTerms(
            provider=agreement.provider, unit_hsa_id=hsa_id, unit_name=unit_name, care_areas=(agreement.care_area,),
            valid_from=date(scenario.as_of.year, 1, 1), valid_to=date(scenario.as_of.year + 1, 12, 31),
            price_sek=price, price_terms=PRICE_TERMS,
            unit_contact=Contact(name=unit_name, email=f"{_slug(clinic)}.{_slug(local)}@{_slug(provider.name)}.example",
                                 address=f"{clinic}, {provider.hub_city}"),
            region_contact=Contact(name=f"Vårdförmedlingen, {purchaser.name}",
                                   email=f"vardformedling@{_slug(purchaser.name)}.example",
                                   address=purchaser.hub_city))
        found.append((f"VA-{agreement.purchaser}-{agreement.provider}-{agreement.care_area}-{local}", terms))
    return found


def agreement_events(scenario: Scenario, *, run_id: str) -> Iterator[Envelope]:
    """Each of the scenario's agreements registered by its purchasing region (not one a region would
    make with itself: intake refuses those, `provider_is_other_region`)."""
    for a in scenario.agreements:
        if a.provider == a.purchaser:
            continue
        full = agreement_terms(scenario, a)
        if not full:
            yield new_envelope(AgreementRegistered(purchaser=a.purchaser, provider=a.provider, care_area=a.care_area),
                               producer=a.purchaser,
                               event_id=stable_event_id(run_id, "agreement", a.purchaser, a.provider, a.care_area))
        for agreement_id, terms in full:
            yield new_envelope(AgreementRegistered(agreement_id=agreement_id, purchaser=a.purchaser, terms=terms),
                               producer=a.purchaser, event_id=stable_event_id(run_id, "agreement", agreement_id))
