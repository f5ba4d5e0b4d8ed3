"""The pages in a real browser (Chromium, headless, driven by Playwright) against a real server.

Every wait is on something observed in the page (Playwright's expect) or in the API; screenshots
are saved under test-artifacts/web/.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from playwright.async_api import expect

from events import OfferPublished, Streams, new_envelope
from events.identifiers import safe_token
from marketplace.adapters.dead_letters import dead_letter, list_dead_letters
from tests.web.conftest import ARTIFACTS, TODAY, Server, login

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WAIT_MS = 60_000


def tag() -> str:
    return safe_token(uuid.uuid4().bytes, 6)  # ids of the bus's pattern


async def test_operator_console_live_tail_charts_and_dead_letter_resend(server: Server, browser: Any,
                                                                        redis_client: Any) -> None:
    page = await login(browser, server, "operator")
    await expect(page.get_by_role("heading", name="NVF operator console")).to_be_visible()
    await expect(page.locator("#tail-state")).to_have_text("live", timeout=WAIT_MS)

    # A scenario flows while the console is open: two providers, two requesting regions.
    t = tag()
    await server.offer("03", f"off-{t}-1", 6)
    await server.offer("05", f"off-{t}-2", 4)
    await server.request("01", f"req-{t}-1", [f"case-{t}-{i}" for i in range(4)])
    await server.request("05", f"req-{t}-2", [f"case-{t}-b{i}" for i in range(3)], waited_days=80)

    # New events appear live in the tail, newest first.
    rows = page.locator("#tail-rows tr.event")
    await expect(rows.filter(has_text=f"off-{t}-1").first).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#tail-rows tr.event[data-type='match.proposed']").first).to_be_visible(timeout=WAIT_MS)
    first_id = await rows.first.inner_text()
    assert "match.proposed" in first_id or "case.state_changed" in first_id or "clearing" in first_id or \
        "message" in first_id, first_id

    # Filters are applied by the server: one case only.
    case = f"case-{t}-0"
    await page.locator("#tail-filters input[name=case]").fill(case)
    await page.get_by_role("button", name="Apply").click()
    await expect(rows.first).to_be_visible(timeout=WAIT_MS)
    cases_shown = set(await page.locator("#tail-rows tr.event").evaluate_all("rs => rs.map(r => r.dataset.case)"))
    assert cases_shown == {case}
    await page.locator("#tail-filters input[name=case]").fill("")
    await page.get_by_role("button", name="Apply").click()

    # Pause holds new events back; resume shows them.
    await page.get_by_role("button", name="Pause").click()
    await server.offer("01", f"off-{t}-psd", 2)
    await expect(page.locator("#tail-buffered")).to_contain_text("new while paused", timeout=WAIT_MS)
    await expect(rows.filter(has_text=f"off-{t}-psd")).to_have_count(0)
    await page.get_by_role("button", name="Resume").click()
    await expect(rows.filter(has_text=f"off-{t}-psd").first).to_be_visible()

    # Consumer groups with their counts; the book; the worklist of cases past the guarantee.
    await expect(page.locator("#groups-body table tbody tr").first).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#groups-body")).to_contain_text("intake")
    await expect(page.locator("#book-body")).to_contain_text("cataract", timeout=WAIT_MS)
    await expect(page.locator("#guarantee-body tr.past").first).to_be_visible(timeout=WAIT_MS)

    # The charts render once placements exist.
    await expect(page.locator("figure.chart[data-chart='Placements per region'] rect.bar").first).to_be_visible(
        timeout=WAIT_MS)
    await expect(page.locator("figure.chart[data-chart='Time to match, days (median, p90)'] circle.point").first
                 ).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#charts figure.chart")).to_have_count(8)
    for title in ("Ancillary costs per region, SEK", "Wait days of placed patients"):
        await expect(page.locator(f"figure.chart[data-chart='{title}'] rect.bar").first).to_be_visible()
    # A rate per day and care area: points on lines, never bars stacked past 100 %.
    await expect(page.locator("figure.chart[data-chart='Fill rate per care area, %'] circle.point").first
                 ).to_be_visible()

    # A case's timeline with its verification.
    await page.locator("#timeline-form input[name=case_ref]").fill(case)
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#timeline-body .verified")).to_contain_text("hash chain verified")
    await page.screenshot(path=str(ARTIFACTS / "operator-console.png"), full_page=True)

    # A dead letter: an offer that (we say) kept failing at intake. Preview, then resend it.
    streams = Streams(server.settings.stream_prefix)
    offer = OfferPublished(offer_id=f"off-{t}-dlq", region="01", unit_hsa_id="SE2321000016-DLQ",
                           care_area="cataract", capacity=3, window_start=TODAY,
                           window_end=TODAY + timedelta(days=200), price_sek=9000)
    body = new_envelope(offer, producer="01").to_json()
    await dead_letter(redis_client, streams.dead_letter, stream=streams.ingress("01"), group="intake",
                      entry_id="1-0", body=body, reason="RuntimeError: database was down", deliveries=5,
                      consumer="test")
    letter = page.locator("#dlq-body tr.dead-letter").filter(has_text="offer.published")
    await expect(letter).to_have_count(1, timeout=WAIT_MS)
    await expect(letter).to_contain_text("database was down")
    await letter.get_by_role("checkbox").check()
    await page.get_by_role("button", name="Preview resend of selected").click()
    await expect(page.locator("#dlq-preview-box")).to_contain_text("Dry run: 1 would be resent")
    await expect(page.locator("#dlq-preview-box")).to_contain_text(streams.ingress("01"))
    assert len(await list_dead_letters(redis_client, streams.dead_letter)) == 1  # a preview sends nothing
    await page.screenshot(path=str(ARTIFACTS / "operator-dead-letter-preview.png"), full_page=True)
    await page.get_by_role("button", name="Resend these 1").click()
    await expect(page.locator("#dlq-status")).to_have_text("resent 1")
    await expect(page.locator("#dlq-body")).to_contain_text("The dead-letter stream is empty.")
    assert await list_dead_letters(redis_client, streams.dead_letter) == []
    # The resent entry went back to its own stream and intake took it this time.
    offers = await server.wait_for("the resent offer", lambda: _offer_ids(server))
    await server.wait_for("the resent offer stored", lambda: _has(server, f"off-{t}-dlq"))
    assert offers


async def _offer_ids(server: Server) -> set[str]:
    return {o["offer_id"] for o in (await server.get("operator", "/v1/offers?limit=500"))["items"]}


async def _has(server: Server, offer_id: str) -> bool:
    return offer_id in await _offer_ids(server)


async def _visible_cases(server: Server, who: str) -> set[str]:
    return {c["case_ref"] for c in (await server.get(who, "/v1/cases?limit=500"))["items"]}


async def test_care_navigator_accepts_patient_answer_and_sees_only_its_region(server: Server, browser: Any) -> None:
    t = tag()
    mine = [f"case-{t}-n{i}" for i in range(3)]
    others = [f"case-{t}-p{i}" for i in range(3)]
    page = await login(browser, server, "01")
    await expect(page.get_by_role("heading", name="NVF · region 01")).to_be_visible()
    await expect(page.locator("#stream-state")).to_have_text("live", timeout=WAIT_MS)

    # Region 03 provides; region 01's and region 05's patients are placed there.
    await server.offer("03", f"off-{t}", 10)
    await server.request("01", f"req-{t}-01", mine)
    await server.request("05", f"req-{t}-05", others)
    target = mine[0]
    await server.wait_for("a match for the navigator's patient",
                          lambda: _state_is(server, target, "match_proposed"))
    for ref in others:
        await server.wait_for("the other region's match", lambda ref=ref: _state_is(server, ref, "match_proposed"))
    # The provider accepts through the API; the care navigator takes it from there, on the page.
    assert (await server.case_command("03", target, "accept", {})).status_code == 200

    row = page.locator(f"#navigator-actions tr.todo[data-case='{target}']")
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await row.get_by_role("button", name="Offered to patient").click()
    await expect(page.locator("#act-status")).to_have_text(f"Offered to patient: {target} done", timeout=WAIT_MS)
    await expect(row.get_by_role("button", name="Patient accepts")).to_be_visible(timeout=WAIT_MS)
    await page.screenshot(path=str(ARTIFACTS / "navigator-before-answer.png"), full_page=True)
    await row.get_by_role("button", name="Patient accepts").click()
    await expect(page.locator("#act-status")).to_have_text(f"Patient accepts: {target} done", timeout=WAIT_MS)
    await server.wait_for("the answer recorded", lambda: _state_in(server, target, {"patient_accepted", "referred"}))
    await expect(row).to_have_count(0, timeout=WAIT_MS)

    # Only region 01's cases, in its lists and in its live stream (filtered by the server).
    stream_rows = page.locator("#stream-rows tr.event")
    await expect(stream_rows.filter(has_text=target).first).to_be_visible(timeout=WAIT_MS)
    visible = await _visible_cases(server, "01")
    assert set(mine) <= visible and not set(others) & visible
    listed = set(await page.locator("#cases-body tr.case").evaluate_all("rs => rs.map(r => r.dataset.case)"))
    streamed = set(await stream_rows.evaluate_all("rs => rs.map(r => r.dataset.case)")) - {""}
    assert set(mine) <= listed <= visible
    assert streamed and streamed <= visible
    content = await page.content()
    for ref in others:
        assert ref not in content
    assert f"off-{t}" in await page.locator("#stream-rows").inner_text() or streamed
    await page.screenshot(path=str(ARTIFACTS / "navigator-start-page.png"), full_page=True)


async def _state_is(server: Server, case_ref: str, state: str) -> bool:
    return await server.case_state(case_ref) == state


async def _state_in(server: Server, case_ref: str, states: set[str]) -> bool:
    return await server.case_state(case_ref) in states


async def test_public_page_from_small_regions_shows_no_cell_under_five(server: Server, browser: Any) -> None:
    t = tag()
    # Small regions: 03 and 05 ask for 1-3 patients; 01 for 7. Providers offer 3, 6 and 12 slots.
    await server.offer("01", f"off-{t}-1", 12)
    await server.offer("03", f"off-{t}-3", 3)
    await server.offer("05", f"off-{t}-5", 6)
    await server.request("01", f"req-{t}-1", [f"case-{t}-k{i}" for i in range(7)])
    await server.request("03", f"req-{t}-3", [f"case-{t}-b{i}" for i in range(2)])
    await server.request("05", f"req-{t}-5", [f"case-{t}-c{i}"for i in range(1)])
    refs = [f"case-{t}-k{i}" for i in range(7)] + [f"case-{t}-b{i}" for i in range(2)] + [f"case-{t}-c0"]
    for ref in refs:
        await server.wait_for("every patient cleared", lambda ref=ref: _state_in(server, ref, {"match_proposed"}))

    context = await browser.new_context(base_url=server.base_url, viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    await page.goto("/public")
    await expect(page.locator("#public-status")).to_contain_text("rows", timeout=WAIT_MS)
    cells = await page.locator("#public-body td.count").all_inner_texts()
    assert cells, (await page.locator("#public-status").inner_text(), (await server.http.get("/public/data.json")).text)
    shown = [c for c in cells if c != "–"]
    assert shown, "everything was suppressed: the page shows nothing"
    assert all(re.fullmatch(r"\d+", c) and int(c) >= 5 for c in shown), cells
    assert "–" in cells  # the small regions' cells are hidden
    text = await page.locator("body").inner_text()
    for ref in refs:
        assert ref not in text
    await page.screenshot(path=str(ARTIFACTS / "public-page.png"), full_page=True)
    raw = json.loads(await (await page.request.get("/public/data.json")).text())
    for row in raw["rows"]:
        for key in ("open_capacity", "requests", "matches", "moved"):
            assert row[key] is None or row[key] >= 5, row
