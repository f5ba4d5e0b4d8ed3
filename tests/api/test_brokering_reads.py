"""The brokering reads through the region API, on a real Redis and each database: provider search
by plain words with the caller's region from its token, agreements only for their parties, the
waiting-time lägesbild of the shipped sample, the capacity feed from an offer on the bus, and the
API's refusals (401, 404, 422 naming the field and the rule)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from events import AgreementRegistered, AgreementUpdated, Payload, new_envelope
from marketplace.services import agreements, waiting_times
from tests.agreements.terms import terms
from tests.api.conftest import Api
from tests.api.scenario import wait_for

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
AS_OF = "2026-06-01"
UNIT_01 = "SE2321000016-KAT01"
UNIT_18 = "SE2321000164-KAT31"


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


async def send(api: Api, payload: Payload, producer: str) -> None:
    """An agreement event as its purchasing region's channel sent it, applied by the intake's own handler."""
    async with api.db.session() as session:
        await agreements.apply(session, new_envelope(payload, producer=producer), payload)  # type: ignore[arg-type]
        await session.commit()


@pytest.fixture
async def market(api: Api) -> Api:
    await send(api, AgreementRegistered(agreement_id="A-25-01", purchaser="25", terms=terms(
        provider="01", unit_hsa_id=UNIT_01, unit_name="Ögonkliniken Stockholm")), "25")
    await send(api, AgreementUpdated(agreement_id="A-25-01", purchaser="25", terms=terms(
        provider="01", unit_hsa_id=UNIT_01, unit_name="Ögonkliniken Stockholm", price_sek=9500.0)), "25")
    await send(api, AgreementRegistered(agreement_id="B-23-18", purchaser="23", terms=terms(
        provider="18", unit_hsa_id=UNIT_18, unit_name="Ögonkliniken Örebro")), "23")
    return api


async def test_search_finds_cataract_in_plain_words_and_filters_by_the_callers_agreements(market: Api):
    for words in ("grå starr", "gråstar"):
        found = await market.get("25", "/v1/providers", params={"q": words, "as_of": AS_OF})
        assert found.status_code == 200, found.text
        body = found.json()
        assert [a["care_area"] for a in body["care_areas"]] == ["cataract"], words
        assert body["region"] == "25"
        # Ranked: the unit with an agreement with the caller's region first, then the others.
        assert [(i["rank"], i["provider"], i["with_my_region"]) for i in body["items"]] == \
            [(1, "01", True), (2, "18", False)]
        first = body["items"][0]
        assert (first["unit_hsa_id"], first["agreement_id"], first["price_sek"]) == (UNIT_01, "A-25-01", 9500.0)
        assert first["unit_contact"]["email"] == "ogon@stockholm.example"
        assert first["region_contact"]["phone"] == "0920-28 40 00"
    assert (await market.get("25", "/v1/providers", params={"q": "grå starr", "as_of": AS_OF})).json()[
        "care_areas"][0]["exact"] is True

    # "Has agreement" is judged for the caller's region, from the token: 25 sees 01, 23 sees 18.
    mine = await market.get("25", "/v1/providers", params={"q": "grå starr", "has_agreement": "true", "as_of": AS_OF})
    assert [i["provider"] for i in mine.json()["items"]] == ["01"]
    theirs = await market.get("23", "/v1/providers", params={"q": "gråstar", "has_agreement": "true", "as_of": AS_OF})
    assert [(i["provider"], i["agreement_id"]) for i in theirs.json()["items"]] == [("18", "B-23-18")]
    # A region without agreements finds the units, none with its own region.
    other = await market.get("03", "/v1/providers", params={"q": "katarakt", "as_of": AS_OF})
    assert [i["with_my_region"] for i in other.json()["items"]] == [False, False]
    assert (await market.get("03", "/v1/providers", params={"q": "katarakt", "has_agreement": "true",
                                                             "as_of": AS_OF})).json()["items"] == []
    # The operator searches as no region: every unit, none "with my region".
    operator = (await market.get("operator", "/v1/providers", params={"q": "katarakt", "as_of": AS_OF})).json()
    assert operator["region"] is None and [(i["provider"], i["with_my_region"]) for i in operator["items"]] == \
        [("01", False), ("18", False)]
    # Narrowed by providing region and by unit; before the agreements' validity nothing is in force.
    narrowed = await market.get("25", "/v1/providers", params={"q": "grå starr", "provider_region": "18",
                                                                 "as_of": AS_OF})
    assert [i["provider"] for i in narrowed.json()["items"]] == ["18"]
    by_unit = await market.get("25", "/v1/providers", params={"q": "grå starr", "unit": "örebro", "as_of": AS_OF})
    assert [i["unit_hsa_id"] for i in by_unit.json()["items"]] == [UNIT_18]
    before = await market.get("25", "/v1/providers", params={"q": "grå starr", "as_of": "2025-06-01"})
    assert before.json()["items"] == []
    etag = mine.headers["etag"]
    assert mine.headers["cache-control"] == "private, no-cache"
    again = await market.get("25", "/v1/providers", params={"q": "grå starr", "has_agreement": "true", "as_of": AS_OF},
                             headers={"If-None-Match": etag})
    assert again.status_code == 304


async def test_agreements_are_read_by_their_parties_only(market: Api):
    listed = await market.get("25", "/v1/agreements")
    assert listed.status_code == 200, listed.text
    assert [a["agreement_id"] for a in listed.json()["items"]] == ["A-25-01"]
    # The providing region sees it too; the operator sees all; a region in none sees none.
    assert [a["agreement_id"] for a in (await market.get("01", "/v1/agreements")).json()["items"]] == ["A-25-01"]
    assert [a["agreement_id"] for a in (await market.get("operator", "/v1/agreements")).json()["items"]] == \
        ["A-25-01", "B-23-18"]
    assert (await market.get("03", "/v1/agreements")).json()["items"] == []
    assert (await market.get("25", "/v1/agreements", params={"status": "ended"})).json()["items"] == []
    assert (await market.get("operator", "/v1/agreements", params={"care_area": "inguinal-hernia"})).json()[
        "items"] == []

    one = await market.get("25", "/v1/agreements/A-25-01")
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["status"], body["version"], body["purchaser"], body["provider"], body["unit_hsa_id"],
            body["price_sek"], body["valid_from"], body["valid_to"]) == \
        ("registered", 2, "25", "01", UNIT_01, 9500.0, "2026-01-01", "2026-12-31")
    assert [(v["version"], v["event_type"], v["producer"], v["terms"]["price_sek"]) for v in body["versions"]] == \
        [(1, "agreement.registered", "25", 9800.0), (2, "agreement.updated", "25", 9500.0)]
    assert (await market.get("25", "/v1/agreements/A-25-01",
                             headers={"If-None-Match": one.headers["etag"]})).status_code == 304
    assert (await market.get("01", "/v1/agreements/A-25-01")).status_code == 200
    assert (await market.get("operator", "/v1/agreements/B-23-18")).status_code == 200

    # Another region's agreement is as if it did not exist.
    hidden = problem(await market.get("25", "/v1/agreements/B-23-18"), 404)
    missing = problem(await market.get("25", "/v1/agreements/no-such"), 404)
    assert hidden["type"] == missing["type"] and hidden["detail"] == "no agreement B-23-18"


async def test_waiting_times_of_the_sample_show_every_region_and_the_late_one_stale(api: Api):
    await waiting_times.import_sample(api.db)
    read = await api.get("01", "/v1/waiting-times", params={"care_area": "cataract", "today": "2026-11-30"})
    assert read.status_code == 200, read.text
    body = read.json()
    assert (body["care_area"], body["today"]) == ("cataract", "2026-11-30")
    views = {v["region"]: v for v in body["items"]}
    assert len(views) == 21 and all(v["has_data"] for v in views.values())
    assert {code for code, v in views.items() if v["stale"]} == {"23"}  # Jämtland Härjedalen reports late
    assert (views["23"]["newest"], views["23"]["stale_from"]) == ("2026-08", "2026-11-07")
    stockholm = views["01"]
    assert (stockholm["newest"], stockholm["stale"], stockholm["stale_from"]) == ("2026-10", False, "2027-01-07")
    waiting = stockholm["waiting"]
    assert (waiting["count"], waiting["share_within_90"], waiting["median_days"]) == (4285, 0.856, 42.0)
    assert waiting["buckets"]["0-30"] == 1532 and sum(waiting["buckets"].values()) == 4285
    assert stockholm["completed"]["mean_days"] == 45.2
    assert [p["period"] for p in stockholm["trend"]][-1] == "2026-10" and len(stockholm["trend"]) == 13
    assert stockholm["trend"][-1]["share_within_90"] == 0.856

    # One region, and a month in the past; any authenticated caller reads the public aggregates.
    one = (await api.get("operator", "/v1/waiting-times", params={"care_area": "cataract", "region": "23",
                                                                   "period": "2026-06", "today": "2026-11-30"})).json()
    assert [(v["region"], v["newest"], v["stale"]) for v in one["items"]] == [("23", "2026-06", True)]
    knees = (await api.get("25", "/v1/waiting-times", params={"care_area": "knee-replacement", "region": "09",
                                                               "today": "2026-11-30"})).json()
    assert knees["items"][0]["completed"] == {"status": "completed", "suppressed": True, "count": None,
                                              "buckets": None, "share_within_90": None, "median_days": None,
                                              "mean_days": None}


async def test_the_capacity_feed_shows_an_offer_published_through_the_api(api: Api):
    start = date.today() + timedelta(days=14)
    offered = await api.post("01", "/v1/offers", {
        "offer_id": "off-7", "unit_hsa_id": "SE2321000016-A1", "care_area": "cataract", "capacity": 3,
        "window_start": start.isoformat(), "window_end": (start + timedelta(days=46)).isoformat(),
        "price_sek": 9800})
    assert offered.status_code == 201, offered.text

    async def reported() -> list:
        r = await api.get("25", "/v1/capacity", params={"care_area": "cataract", "region": "01"})
        return r.json()["items"]

    items = await wait_for(reported, what="the unit's capacity report")
    unit = items[0]
    assert (unit["unit_hsa_id"], unit["region"], unit["free_capacity"], unit["places"], unit["stale"]) == \
        ("SE2321000016-A1", "01", True, 3, False)
    assert unit["wait_band"]["min_weeks"] >= 1 and unit["wait_band"]["label"].endswith("veckor")
    # Six weeks and a day after its update the report is stale (its window still open).
    later = (date.fromisoformat(unit["updated_on"]) + timedelta(days=43)).isoformat()
    aged = (await api.get("25", "/v1/capacity", params={"care_area": "cataract", "today": later})).json()
    assert [(u["unit_hsa_id"], u["stale"], u["free_capacity"]) for u in aged["items"]] == \
        [("SE2321000016-A1", True, True)]
    assert (await api.get("25", "/v1/capacity", params={"region": "03"})).json()["items"] == []


async def test_no_token_is_a_401_and_a_bad_parameter_a_422_naming_the_field_and_the_rule(api: Api):
    for path in ("/v1/providers?q=katarakt", "/v1/agreements", "/v1/agreements/A-25-01",
                 "/v1/waiting-times?care_area=cataract", "/v1/capacity"):
        r = await api.http.get(path)
        assert problem(r, 401)["status"] == 401 and r.headers["www-authenticate"].startswith("Bearer"), path

    cases = [
        ("/v1/providers", {"provider_region": "99"}, "provider_region", "known_region"),
        ("/v1/providers", {"provider_region": "1"}, "provider_region", "string_pattern_mismatch"),
        ("/v1/providers", {"q": "x" * 201}, "q", "string_too_long"),
        ("/v1/providers", {"q": "grå\x00starr"}, "q", "string_pattern_mismatch"),
        ("/v1/providers", {"as_of": "1999-12-31"}, "as_of", "greater_than_equal"),
        ("/v1/providers", {"limit": "0"}, "limit", "greater_than_equal"),
        ("/v1/agreements", {"status": "signed"}, "status", "literal_error"),
        ("/v1/agreements", {"limit": "501"}, "limit", "less_than_equal"),
        ("/v1/waiting-times", {"care_area": "cardiology"}, "care_area", "known_care_area"),
        ("/v1/waiting-times", {"period": "2026-13"}, "period", "month"),
        ("/v1/waiting-times", {"today": "not-a-day"}, "today", "date_from_datetime_parsing"),
        ("/v1/capacity", {"region": "02"}, "region", "known_region"),
    ]
    for path, params, field, rule in cases:
        body = problem(await api.get("25", path, params=params), 422)
        assert (body["invalid_params"][0]["name"], body["invalid_params"][0]["rule"]) == (field, rule), (path, params)
        assert body["detail"].startswith(field + ":")
    # The operator has no region to filter agreements by.
    body = problem(await api.get("operator", "/v1/providers", params={"q": "katarakt", "has_agreement": "true"}), 422)
    assert body["invalid_params"][0]["name"] == "has_agreement"
