"""Search for care navigators: which units perform a care area, by plain words, region and unit,
optionally only those with an agreement with the navigator's own region; and the agreement
owner's preview of how a draft will appear there.

Words become care areas through the database's full-text search (`adapters.search_index`); the
units come from the agreements in force that cover those areas. One row per unit and care area
(a unit that several regions have agreements with appears once, showing the agreement with the
navigator's region when there is one), ranked: the words found as written before near spellings,
units with an agreement with the navigator's region first, then by region and unit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlmodel.ext.asyncio.session import AsyncSession

from events import Contact
from marketplace.adapters.search_index import AreaMatch, SearchQueryError, match_care_areas
from marketplace.agreements import Agreement, AgreementStatus
from marketplace.agreements.vocabulary import Term, terms_of
from marketplace.services.agreements import agreements_covering, load
from matchers.reference import care_areas, regions


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str = ""
    my_region: str | None = None  # the care navigator's region
    provider_region: str | None = None
    unit: str | None = None  # an HSA-id, or part of a unit's name
    has_agreement: bool = False  # only units with an agreement with my_region
    as_of: date = field(default_factory=date.today)
    limit: int = 100

    def checked(self) -> SearchQuery:
        for name, code in (("region", self.my_region), ("provider_region", self.provider_region)):
            if code is not None and code not in regions():
                raise SearchQueryError(name, "known_region", f"unknown region code {code!r}")
        if self.has_agreement and self.my_region is None:
            raise SearchQueryError("has_agreement", "needs_region",
                                   "--has-agreement needs your region (--region)")
        if self.unit is not None and not 1 <= len(self.unit) <= 200:
            raise SearchQueryError("unit", "length", "the unit is 1 to 200 characters")
        if not 1 <= self.limit <= 1000:
            raise SearchQueryError("limit", "range", "limit is 1 to 1000")
        return self


@dataclass(frozen=True, slots=True)
class ProviderHit:
    care_area: str
    care_area_name: str
    matched_term: str
    exact: bool
    agreement_id: str
    provider: str
    provider_name: str
    unit_hsa_id: str | None
    unit_name: str
    unit_contact: Contact | None
    region_contact: Contact | None
    valid_from: date | None
    valid_to: date | None
    price_sek: float | None
    price_terms: str
    with_my_region: bool
    purchasers: tuple[str, ...]  # the regions that have an agreement with this unit for this area


@dataclass(frozen=True, slots=True)
class SearchResult:
    areas: list[AreaMatch]
    hits: list[ProviderHit]


def _unit_matches(agreement: Agreement, unit: str | None) -> bool:
    if unit is None:
        return True
    t = agreement.terms
    needle = unit.strip().casefold()
    return t is not None and (t.unit_hsa_id.casefold() == needle or needle in t.unit_name.casefold())


def provider_hits(agreements: Iterable[Agreement], areas: Sequence[AreaMatch], *, my_region: str | None,
                  provider_region: str | None = None, unit: str | None = None,
                  has_agreement: bool = False) -> list[ProviderHit]:
    """The search rows for these agreements (already known to be in force), ranked. Pure."""
    rank = {m.care_area: i for i, m in enumerate(areas)}
    by_area = {m.care_area: m for m in areas}
    groups: dict[tuple[str, str, str | None], list[Agreement]] = {}
    for a in agreements:
        if provider_region is not None and a.provider != provider_region:
            continue
        if not _unit_matches(a, unit):
            continue
        for area in a.care_areas:
            if area in by_area:
                groups.setdefault((area, a.provider, a.terms.unit_hsa_id if a.terms else None), []).append(a)
    hits = []
    for (area, provider, hsa_id), group in groups.items():
        mine = [a for a in group if a.purchaser == my_region]
        if has_agreement and not mine:
            continue
        shown = (mine or sorted(group, key=lambda a: a.agreement_id))[0]
        t = shown.terms
        match = by_area[area]
        hits.append(ProviderHit(
            care_area=area, care_area_name=care_areas()[area].name_sv, matched_term=match.term, exact=match.exact,
            agreement_id=shown.agreement_id, provider=provider, provider_name=regions()[provider].name,
            unit_hsa_id=hsa_id, unit_name=t.unit_name if t else f"{regions()[provider].name} (no unit named)",
            unit_contact=t.unit_contact if t else None, region_contact=t.region_contact if t else None,
            valid_from=shown.valid_from, valid_to=shown.valid_to, price_sek=t.price_sek if t else None,
            price_terms=t.price_terms if t else "", with_my_region=bool(mine),
            purchasers=tuple(sorted({a.purchaser for a in group}))))
    hits.sort(key=lambda h: (rank[h.care_area], not h.with_my_region, h.provider, h.unit_name, h.agreement_id))
    return hits


async def search_providers(session: AsyncSession, query: SearchQuery) -> SearchResult:
    q = query.checked()
    if q.text.strip():
        areas = await match_care_areas(session, q.text)
    else:  # no words: every care area, filtered by region or unit only
        areas = [AreaMatch(code, area.name_sv, True) for code, area in care_areas().items()]
    if not areas:
        return SearchResult([], [])
    in_force = await agreements_covering(session, [m.care_area for m in areas], in_force_on=q.as_of,
                                         provider=q.provider_region,
                                         units_of=q.my_region if q.has_agreement else None)
    hits = provider_hits(in_force, areas, my_region=q.my_region, provider_region=q.provider_region, unit=q.unit,
                         has_agreement=q.has_agreement)
    return SearchResult(areas, hits[:q.limit])


@dataclass(frozen=True, slots=True)
class Preview:
    """How an agreement will appear to care navigators: its rows (as the purchasing region's
    navigators see them), the words that find each of its care areas, and why it would not show."""

    agreement: Agreement
    hits: list[ProviderHit]
    found_by: dict[str, list[Term]]
    notes: list[str]


async def preview(session: AsyncSession, agreement_id: str, as_of: date) -> Preview | None:
    agreement = await load(session, agreement_id)
    if agreement is None:
        return None
    areas = [AreaMatch(area, care_areas()[area].name_sv, True) for area in agreement.care_areas]
    hits = provider_hits([agreement], areas, my_region=agreement.purchaser)
    found_by: dict[str, list[Term]] = {}
    for area in agreement.care_areas:
        found = []
        for term in terms_of(area):
            if term.kind == "code":
                continue
            matches = await match_care_areas(session, term.term)
            if matches and matches[0].care_area == area:
                found.append(term)
        found_by[area] = found
    notes = []
    if agreement.status is AgreementStatus.DRAFT:
        notes.append("a draft: navigators will see it once it is registered")
    elif agreement.status is AgreementStatus.ENDED:
        notes.append(f"ended on {agreement.ended_on}: navigators no longer see it from that day")
    if agreement.valid_from and as_of < agreement.valid_from:
        notes.append(f"valid from {agreement.valid_from}: not shown before that day")
    if agreement.valid_to and as_of > agreement.valid_to:
        notes.append(f"valid to {agreement.valid_to}: its validity is over")
    return Preview(agreement, hits, found_by, notes)
