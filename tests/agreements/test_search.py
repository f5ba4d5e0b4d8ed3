"""Care navigators' search, on each database's own full-text search (PostgreSQL and SQLite)."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from sqlmodel import col, select

from events import AgreementDrafted, AgreementEnded, AgreementRegistered, Payload, new_envelope
from marketplace.adapters.database import Database
from marketplace.adapters.orm import AgreementRow, AgreementVersionRow, CareAreaTermRow
from marketplace.adapters.search_index import SearchQueryError, ensure_search_index, match_care_areas
from marketplace.agreements.vocabulary import vocabulary
from marketplace.services import agreements
from marketplace.services.provider_search import SearchQuery, preview, search_providers
from marketplace.services.refusals import Refused
from tests.agreements.terms import terms

pytestmark = pytest.mark.integration  # every test here searches a real database

REQUIRED = {
    "cataract": ["grå starr", "gråstarr", "katarakt", "starroperation"],
    "inguinal-hernia": ["ljumskbråck", "bråck", "inguinalbråck", "lårbråck"],
    "knee-replacement": ["knäprotes", "knäplastik", "knäledsplastik", "artros i knät"],
}
WORDS = [(word, area) for area, words in REQUIRED.items() for word in words]
DAY = date(2026, 6, 1)


def one_letter_off(word: str) -> list[str]:
    """A letter dropped, a letter changed and a letter doubled, in the middle of the word."""
    i = len(word) // 2
    if word[i] == " ":
        i += 1
    changed = "e" if word[i] != "e" else "a"
    return [word[:i] + word[i + 1:], word[:i] + changed + word[i + 1:], word[:i] + word[i] + word[i:]]


MISSPELT = [(variant, area) for word, area in WORDS for variant in one_letter_off(word)]


async def send(db: Database, payload: Payload, producer: str) -> None:
    async with db.session() as session:
        await agreements.apply(session, new_envelope(payload, producer=producer), payload)  # type: ignore[arg-type]
        await session.commit()


@pytest.fixture
async def market(database: Database) -> Database:
    unit = {"01": "SE2321000016-KAT01", "18": "SE2321000164-KAT31", "14": "SE2321000131-BRA01",
            "05": "SE2321000040-KNA01", "13": "SE2321000115-KAT11", "07": "SE2321000065-KAT21"}
    for agreement_id, purchaser, provider, area in [
        ("A-25-01", "25", "01", "cataract"), ("B-23-18", "23", "18", "cataract"),
        ("B-25-18-old", "25", "18", "cataract"),  # ended below: the same unit has no agreement with 25 now
        ("C-25-14", "25", "14", "inguinal-hernia"), ("D-24-05", "24", "05", "knee-replacement"),
        ("F-25-07", "25", "07", "cataract"),
    ]:
        await send(database, AgreementRegistered(
            agreement_id=agreement_id, purchaser=purchaser,
            terms=terms(provider=provider, unit_hsa_id=unit[provider], unit_name=f"Enhet {provider}",
                        care_areas=(area,))), purchaser)
    await send(database, AgreementDrafted(agreement_id="E-25-13", purchaser="25", terms=terms(
        provider="13", unit_hsa_id=unit["13"], unit_name="Enhet 13")), "25")
    await send(database, AgreementEnded(agreement_id="F-25-07", purchaser="25", ended_on=date(2026, 3, 1)), "25")
    await send(database, AgreementEnded(agreement_id="B-25-18-old", purchaser="25", ended_on=date(2026, 3, 1)), "25")
    return database


@pytest.mark.parametrize(("words", "area"), WORDS)
async def test_every_required_word_finds_its_care_area(database, words, area):
    async with database.session() as session:
        found = await match_care_areas(session, words)
    assert [m.care_area for m in found] == [area]
    assert found[0].exact


@pytest.mark.parametrize(("words", "area"), MISSPELT)
async def test_a_word_one_letter_off_still_finds_its_care_area_first(database, words, area):
    async with database.session() as session:
        found = await match_care_areas(session, words)
    assert found and found[0].care_area == area, (words, found)


@pytest.mark.parametrize("words", ["kardiologi", "tandvård", "hudutslag", "xyz"])
async def test_words_for_other_care_find_nothing(database, words):
    async with database.session() as session:
        assert await match_care_areas(session, words) == []


async def test_building_the_index_at_once_from_several_sessions_and_again_changes_nothing(database):
    async def build() -> None:
        async with database.session() as session:
            await ensure_search_index(session)

    await asyncio.gather(*(build() for _ in range(4)))
    await build()
    async with database.session() as session:
        assert [m.care_area for m in await match_care_areas(session, "gråstarr")] == ["cataract"]
        terms_stored = (await session.exec(select(CareAreaTermRow))).all()
    assert len(terms_stored) == len(vocabulary())


async def test_has_agreement_keeps_only_units_with_an_agreement_in_force_with_my_region(market):
    async with market.session() as session:
        mine = await search_providers(session, SearchQuery("grå starr", my_region="25", has_agreement=True, as_of=DAY))
        everyone = await search_providers(session, SearchQuery("grå starr", my_region="25", as_of=DAY))
        for_23 = await search_providers(session, SearchQuery("katarakt", my_region="23", has_agreement=True,
                                                             as_of=DAY))
        before_end = await search_providers(session, SearchQuery("katarakt", my_region="25", has_agreement=True,
                                                                 as_of=date(2026, 2, 1)))
    # The draft (13) and the ended agreements (07; 18 with 25) do not count; 18 still has 23's.
    assert [(h.provider, h.agreement_id) for h in mine.hits] == [("01", "A-25-01")]
    assert [(h.provider, h.with_my_region) for h in everyone.hits] == [("01", True), ("18", False)]
    assert everyone.hits[1].purchasers == ("23",)
    assert [h.provider for h in for_23.hits] == ["18"]
    assert [h.provider for h in before_end.hits] == ["01", "07", "18"]  # before they ended, they counted
    hit = mine.hits[0]
    assert (hit.unit_hsa_id, hit.care_area_name) == ("SE2321000016-KAT01", "Kataraktoperation")
    assert hit.unit_contact is not None and hit.unit_contact.email == "ogon@stockholm.example"
    assert hit.region_contact is not None and hit.region_contact.phone == "0920-28 40 00"


async def test_search_by_region_and_by_unit(market):
    async with market.session() as session:
        by_region = await search_providers(session, SearchQuery("", provider_region="14", as_of=DAY))
        by_unit = await search_providers(session, SearchQuery("", unit="se2321000040-kna01", as_of=DAY))
        by_name = await search_providers(session, SearchQuery("katarakt", unit="enhet 18", as_of=DAY))
        with pytest.raises(SearchQueryError, match="needs your region"):
            await search_providers(session, SearchQuery("katarakt", has_agreement=True))
        with pytest.raises(SearchQueryError, match="unknown region"):
            await search_providers(session, SearchQuery("katarakt", my_region="99"))
    assert [(h.provider, h.care_area) for h in by_region.hits] == [("14", "inguinal-hernia")]
    assert [(h.provider, h.care_area) for h in by_unit.hits] == [("05", "knee-replacement")]
    assert [h.unit_name for h in by_name.hits] == ["Enhet 18"]


async def test_the_owner_previews_a_draft_as_navigators_will_see_it(market):
    async with market.session() as session:
        shown = await preview(session, "E-25-13", DAY)
        searched = await search_providers(session, SearchQuery("katarakt", unit="Enhet 13", as_of=DAY))
    assert shown is not None and searched.hits == []  # not in search until registered
    assert [(h.unit_name, h.with_my_region) for h in shown.hits] == [("Enhet 13", True)]
    assert {"grå starr", "gråstarr", "katarakt", "starroperation"} <= {t.term for t in shown.found_by["cataract"]}
    assert any("draft" in note for note in shown.notes)


async def test_every_change_is_a_version_and_the_same_terms_again_are_none(market):
    again = AgreementRegistered(agreement_id="A-25-01", purchaser="25", terms=terms(
        provider="01", unit_hsa_id="SE2321000016-KAT01", unit_name="Enhet 01", care_areas=("cataract",)))
    await send(market, again, "25")
    await send(market, again.model_copy(update={"terms": again.terms.model_copy(  # type: ignore[union-attr]
        update={"care_areas": ("cataract", "inguinal-hernia")})}), "25")
    with pytest.raises(Refused) as refused:
        await send(market, AgreementEnded(agreement_id="A-25-01", purchaser="25", ended_on=DAY), "01")
    assert (refused.value.field, refused.value.rule) == ("producer", "producer_is_purchaser")
    async with market.session() as session:
        versions = (await session.exec(select(AgreementVersionRow).where(
            AgreementVersionRow.agreement_id == "A-25-01").order_by(col(AgreementVersionRow.version)))).all()
        row = await session.get(AgreementRow, "A-25-01")
        hernia = await search_providers(session, SearchQuery("ljumskbråck", my_region="25", as_of=DAY))
    assert [(v.version, v.event_type) for v in versions] == [(1, "agreement.registered"), (2, "agreement.updated")]
    assert row is not None and row.care_areas == ["cataract", "inguinal-hernia"]
    assert {h.provider for h in hernia.hits} == {"01", "14"}


async def test_several_changes_of_one_agreement_in_one_transaction(database):
    """One intake batch may carry an agreement's registration and its end."""
    registered = AgreementRegistered(agreement_id="S-1", purchaser="25", terms=terms())
    ended = AgreementEnded(agreement_id="S-1", purchaser="25", ended_on=date(2026, 4, 1))
    async with database.session() as session:
        for payload in (registered, ended):
            await agreements.apply(session, new_envelope(payload, producer="25"), payload)
        await session.commit()
    async with database.session() as session:
        row = await session.get(AgreementRow, "S-1")
        versions = (await session.exec(select(AgreementVersionRow.event_type).where(
            AgreementVersionRow.agreement_id == "S-1").order_by(col(AgreementVersionRow.version)))).all()
    assert row is not None and (row.status, row.version, row.ended_on) == ("ended", 2, date(2026, 4, 1))
    assert list(versions) == ["agreement.registered", "agreement.ended"]
