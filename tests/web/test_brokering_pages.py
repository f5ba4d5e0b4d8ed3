"""Waiting times, provider search and the free-capacity feed on the pages, in a real browser
(Chromium driven by Playwright) against a real server with its workers.

The data comes in by the product's own paths: the agreements as the regions' CSV exports,
planned by the import (`nvf agreements import`) and sent on each region's own ingress stream;
the waiting times as the shipped sample through the import service `nvf demo` and
`nvf waits import --sample` use; the capacity feed from an offer published through the API.
Every wait is on something seen in the page; screenshots go to test-artifacts/web/.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from playwright.async_api import expect

from events import Streams
from events.identifiers import safe_token
from marketplace.agreements.csv_import import plan_import
from marketplace.services import waiting_times
from tests.integration.harness import publish_events
from tests.web.conftest import ARTIFACTS, Server, login

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WAIT_MS = 60_000
# The sample's newest month is 2026-10: on this day every region's figures are up to date except
# Jämtland Härjedalen's (23), which has not sent its two newest months.
SAMPLE_DAY = date(2026, 11, 30)
NORRBOTTEN = resources.files("marketplace.agreements").joinpath("samples/agreements-25.csv").read_bytes()
# Region Uppsala's own export: one cataract agreement, with Örebro's eye clinic.
UPPSALA = (
    "avtals_id;köpare;utförare;hsa_id;enhet;vårdområden;giltig_från;giltig_till;pris_sek;prisvillkor;"
    "enhet_telefon;enhet_epost;enhet_adress;region_kontakt;region_telefon;region_epost\n"
    "RUP-2026-001;03;18;SE2321000164-KAT31;Ögonkliniken Örebro (KAT31);cataract;2026-01-01;2027-12-31;"
    "9 500,00;per patient;019-602 10 00;ogonkliniken.kat31@region-orebro-lan.example;Ögonkliniken, Örebro;"
    "Vårdförmedlingen, Region Uppsala;018-611 00 00;vardformedling@region-uppsala.example\n"
).encode()
KAT01 = "SE2321000016-KAT01"
OSTERGOTLAND = (
    "avtals_id;köpare;utförare;hsa_id;enhet;vårdområden;giltig_från;giltig_till;pris_sek;region_kontakt\n"
    f"OGL-2026-001;05;01;{KAT01};Ögonkliniken Stockholm (KAT01);cataract;2026-01-01;;9 900,00;"
    "Vårdförmedlingen, Region Östergötland\n"
).encode()
CATARACT_UNITS = ("Ögonkliniken Stockholm (KAT01)", "Ögonkliniken Örebro (KAT31)", "Dagkirurgen Halmstad (DAG01)")


def tag() -> str:
    return safe_token(uuid.uuid4().bytes, 6)


def on_sample_day(server: Server) -> None:
    """The marketplace's day (the workers' clock, which the pages are given) is the sample's."""
    server.app.state.nvf.runtime.context.clock = lambda: datetime(SAMPLE_DAY.year, SAMPLE_DAY.month,
                                                                  SAMPLE_DAY.day, 9, tzinfo=UTC)


async def import_agreements(server: Server, redis_client: Any, files: list[tuple[bytes, str]]) -> None:
    """Each region's file as `nvf agreements import FILE --as REGION` sends it."""
    envelopes = []
    for data, region in files:
        plan = plan_import(data, region)
        assert not plan.problems, plan.problems
        envelopes += [r.envelope for r in plan.rows]
    await publish_events(redis_client, Streams(server.settings.stream_prefix), envelopes)

    async def registered() -> bool:
        items = (await server.get("operator", "/v1/agreements?status=registered"))["items"]
        return len(items) == len(envelopes)

    await server.wait_for("the agreements registered", registered)


async def test_care_navigator_finds_providers_in_plain_words_and_sees_waiting_times(server: Server, browser: Any,
                                                                                  redis_client: Any) -> None:
    on_sample_day(server)
    await import_agreements(server, redis_client, [(NORRBOTTEN, "25"), (UPPSALA, "03")])
    await waiting_times.import_sample(server.db)
    page = await login(browser, server, "03")
    await expect(page.get_by_role("heading", name="Find a provider")).to_be_visible()

    # Plain Swedish words: the cataract units of every region, ranked, with their contacts.
    summary = page.locator("#search-summary")
    results = page.locator("#find-panel tr.provider")
    words = page.get_by_label("What the patient needs (plain words)")
    await words.fill("grå starr")
    await page.get_by_role("button", name="Search").click()
    await expect(summary).to_have_text("3 units for Kataraktoperation", timeout=WAIT_MS)
    await expect(results).to_have_count(3)
    for unit in CATARACT_UNITS:
        await expect(results.filter(has_text=unit)).to_have_count(1)
    # The unit with an agreement with Uppsala ranks first, with its contacts and the agreement.
    first = results.first
    await expect(first).to_contain_text("Ögonkliniken Örebro (KAT31)")
    await expect(first).to_contain_text("SE2321000164-KAT31")
    await expect(first).to_contain_text("Region Örebro län (18)")
    await expect(first).to_contain_text("ogonkliniken.kat31@region-orebro-lan.example")
    await expect(first).to_contain_text("019-602 10 00")
    await expect(first).to_contain_text("Agreement with your region RUP-2026-001")
    stockholm = results.filter(has_text="Ögonkliniken Stockholm (KAT01)")
    await expect(stockholm).to_contain_text("ogonkliniken.kat01@region-stockholm.example")
    await expect(stockholm).to_contain_text("Vårdförmedlingen, Region Norrbotten")
    await expect(stockholm).to_contain_text("No agreement with your region")
    await expect(stockholm).to_contain_text("no capacity report")
    shown = await results.locator(".unit strong").all_inner_texts()
    await page.screenshot(path=str(ARTIFACTS / "provider-search.png"), full_page=True)

    # The clinical word and a one-letter misspelling find the same units.
    for typed, said in (("katarakt", "3 units for Kataraktoperation"),
                        ("kataract", "3 units for Kataraktoperation (near spelling of")):
        await words.fill(typed)
        await page.get_by_role("button", name="Search").click()
        await expect(summary).to_contain_text(said, timeout=WAIT_MS)
        await expect(results).to_have_count(3)
        assert await results.locator(".unit strong").all_inner_texts() == shown, typed

    # Only units with an agreement with my region: Örebro's, not Norrbotten's other providers.
    await page.get_by_label("Has agreement with my region").check()
    await expect(summary).to_contain_text("1 unit for Kataraktoperation", timeout=WAIT_MS)
    await expect(summary).to_contain_text("with an agreement with your region")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Ögonkliniken Örebro (KAT31)")
    await page.get_by_label("Has agreement with my region").uncheck()
    await expect(results).to_have_count(3, timeout=WAIT_MS)
    # By the provider's region.
    await page.get_by_label("Provider's region").select_option("13")
    await expect(summary).to_contain_text("in Region Halland", timeout=WAIT_MS)
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Dagkirurgen Halmstad (DAG01)")
    # Words the search does not know say so, and point at the glossary, which lists the lay words.
    await words.fill("xyzzy")
    await page.get_by_role("button", name="Search").click()
    await expect(summary).to_have_text("No care area matches “xyzzy”: see the glossary for words that work.")
    await page.get_by_text("Glossary: the words the search knows").click()
    await expect(page.locator("#find-panel .glossary")).to_contain_text("grå starr")

    # Waiting times per region for cataract: all 21, Jämtland Härjedalen's stale.
    waits = page.locator("#waits-panel")
    rows = waits.locator("tr.waits")
    await expect(rows).to_have_count(21, timeout=WAIT_MS)
    await expect(waits.locator("#waits-status")).to_contain_text(
        "21 regions, Kataraktoperation; stale: Region Jämtland Härjedalen")
    late = waits.locator("tr.waits[data-region='23']")
    await expect(late).to_contain_text("2026-08")
    await expect(late).to_contain_text("stale since 2026-11-07")
    await expect(waits.locator("tr.waits", has_text="stale")).to_have_count(1)
    await expect(waits.locator("tr.waits[data-region='01']")).to_contain_text("up to date")
    await expect(waits.locator("tr.waits[data-region='01']")).to_contain_text("85.6 %")
    # Over time: my region's 13 months, one point each.
    chart = waits.locator("figure.chart.trend")
    await expect(chart).to_contain_text("Region Uppsala, Kataraktoperation")
    await expect(chart.locator("circle.point")).to_have_count(13)
    await expect(chart).to_contain_text("13 months, 2025-10 to 2026-10")
    await expect(waits.locator("tr.waits[data-region='03'] svg.sparkline")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "waiting-times-region.png"), full_page=True)
    # Gotland's knee replacements: too few operated to show, and shown as suppressed, not as 0.
    await waits.get_by_label("Care area").select_option("knee-replacement")
    gotland = waits.locator("tr.waits[data-region='09']")
    await expect(gotland).to_contain_text("suppressed", timeout=WAIT_MS)
    operated = gotland.locator("td").nth(5)
    await expect(operated).to_have_text("suppressed")
    await expect(gotland.locator("td").nth(2)).to_have_text("22")
    await waits.get_by_label("Trend for region").select_option("09")
    await expect(chart).to_contain_text("Region Gotland, Knäprotesoperation")


async def test_waiting_times_on_the_public_page_and_the_operator_console(server: Server, browser: Any) -> None:
    on_sample_day(server)
    await waiting_times.import_sample(server.db)

    context = await browser.new_context(base_url=server.base_url, viewport={"width": 1300, "height": 1000})
    page = await context.new_page()
    await page.goto("/public")
    await expect(page).to_have_url(f"{server.base_url}/public")  # no login asked for
    waits = page.locator("#waits-panel")
    await expect(waits.locator("tr.waits")).to_have_count(21, timeout=WAIT_MS)
    await expect(waits.locator("tr.waits[data-region='23']")).to_contain_text("stale since 2026-11-07")
    await expect(waits.locator("tr.waits", has_text="stale")).to_have_count(1)
    await expect(waits.locator("figure.chart.trend circle.point")).to_have_count(13)
    await waits.get_by_label("Care area").select_option("knee-replacement")
    await expect(waits.locator("tr.waits[data-region='09'] td").nth(5)).to_have_text("suppressed", timeout=WAIT_MS)
    await page.screenshot(path=str(ARTIFACTS / "waiting-times-public.png"), full_page=True)
    await context.close()

    console = await login(browser, server, "operator")
    waits = console.locator("#waits-panel")
    await expect(waits.locator("tr.waits")).to_have_count(21, timeout=WAIT_MS)
    await expect(waits.locator("tr.waits[data-region='23']")).to_contain_text("stale since 2026-11-07")
    await waits.get_by_label("Care area").select_option("inguinal-hernia")
    await expect(waits.locator("#waits-status")).to_contain_text("Ljumskbråcksoperation", timeout=WAIT_MS)
    await expect(waits.locator("tr.waits[data-region='23']")).to_contain_text("stale")


async def test_an_offer_published_through_the_api_shows_in_the_capacity_feed(server: Server, browser: Any,
                                                                             redis_client: Any) -> None:
    # On the real day: Östergötland's export, an agreement with Stockholm's eye clinic until ended.
    await import_agreements(server, redis_client, [(OSTERGOTLAND, "05")])
    page = await login(browser, server, "05")
    feed = page.locator("#capacity-panel")
    await expect(feed.locator("#capacity-status")).to_contain_text("0 unit reports", timeout=WAIT_MS)
    await expect(feed).to_contain_text("No unit has reported capacity yet.")

    # Stockholm's eye clinic publishes six places, in a window one to nine weeks ahead.
    r = await server.post("01", "/v1/offers", {
        "offer_id": f"off-{tag()}", "unit_hsa_id": KAT01, "care_area": "cataract", "capacity": 6,
        "window_start": (date.today() + timedelta(days=7)).isoformat(),
        "window_end": (date.today() + timedelta(days=60)).isoformat(), "price_sek": 9800})
    assert r.status_code in (201, 202), r.text
    unit = feed.locator(f"tr.unit-capacity[data-unit='{KAT01}']")
    await expect(unit).to_be_visible(timeout=WAIT_MS)
    for seen in ("Region Stockholm (01)", "Kataraktoperation", "yes", "current", "veckor"):
        await expect(unit).to_contain_text(seen)
    await expect(unit.locator("td").nth(5)).to_have_text("6")
    await expect(unit.locator("td").nth(6)).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))  # its update date

    # The navigator's search shows the unit's report beside its agreement.
    await page.get_by_label("What the patient needs (plain words)").fill("starroperation")
    await page.get_by_role("button", name="Search").click()
    found = page.locator(f"#find-panel tr.provider[data-unit='{KAT01}']")
    await expect(found).to_contain_text("free capacity: yes", timeout=WAIT_MS)
    await expect(found).to_contain_text("veckor")
    await expect(found).to_contain_text("Agreement with your region OGL-2026-001")
    await page.screenshot(path=str(ARTIFACTS / "capacity-feed-region.png"), full_page=True)

    console = await login(browser, server, "operator")
    row = console.locator(f"#capacity-panel tr.unit-capacity[data-unit='{KAT01}']")
    await expect(row).to_contain_text("yes", timeout=WAIT_MS)
    await console.locator("#capacity-panel").get_by_label("Unit's region").select_option("03")
    await expect(console.locator("#capacity-panel")).to_contain_text("No unit has reported capacity yet.",
                                                                     timeout=WAIT_MS)

    # Six weeks and a day on, with no news from the unit, its report is marked stale.
    later = datetime.now(UTC) + timedelta(days=43)
    server.app.state.nvf.runtime.context.clock = lambda: later
    await console.reload()
    await expect(row.locator("td").nth(7)).to_have_text("stale", timeout=WAIT_MS)
    await expect(console.locator("#capacity-status")).to_contain_text("1 stale")
    await console.screenshot(path=str(ARTIFACTS / "capacity-feed-console.png"), full_page=True)
