"""The pages' server side over HTTP against a real server: the session cookie, the operator's
routes, the dead-letter resend, a region's live stream filtered by its identity, the worklist."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import select

from events import OfferPublished, Streams, new_envelope
from events.identifiers import safe_token
from marketplace.adapters.api_orm import AuditRow
from marketplace.adapters.dead_letters import DATA_FIELD, dead_letter, list_dead_letters
from marketplace.entrypoints.web.session import COOKIE
from marketplace.lifecycle import SendReferral
from marketplace.services import api_clients
from marketplace.services.lifecycle import CaseLedger
from tests.web.conftest import TODAY, Server

pytestmark = [pytest.mark.integration]


def tag() -> str:
    return safe_token(uuid.uuid4().bytes, 6)  # ids of the bus's pattern


async def _login(server: Server, who: str) -> httpx.AsyncClient:
    client_id, secret = await server.client(who)
    http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
    r = await http.post("/login", data={"client_id": client_id, "client_secret": secret})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return http


async def test_login_sets_a_strict_httponly_cookie_and_the_api_accepts_it(server: Server) -> None:
    anonymous = await server.http.get("/")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"

    client_id, secret = await server.client("01")
    wrong = await server.http.post("/login", data={"client_id": client_id, "client_secret": "nope"})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/login?error=credentials"
    assert "set-cookie" not in wrong.headers
    elsewhere = await server.http.post("/login", data={"client_id": client_id, "client_secret": secret},
                                       headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        r = await http.post("/login", data={"client_id": client_id, "client_secret": secret})
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = await http.get("/")
        assert page.status_code == 200 and "region.js" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        me = (await http.get("/v1/whoami")).json()
        assert me["role"] == "region" and me["region"] == "01" and me["client_id"] == client_id

        # A change through the cookie needs the pages' own header (a cross-site form cannot send it).
        body = {"offer_id": f"off-{tag()}", "unit_hsa_id": "SE2321000016-A1", "care_area": "cataract",
                "capacity": 2, "window_start": TODAY.isoformat(), "window_end": TODAY.isoformat(), "price_sek": 100}
        refused = await http.post("/v1/offers", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert refused.status_code == 403 and "X-NVF-Page" in refused.json()["detail"]
        accepted = await http.post("/v1/offers", json=body,
                                   headers={"Idempotency-Key": str(uuid.uuid4()), "X-NVF-Page": "1"})
        assert accepted.status_code in (201, 202), accepted.text

        # The page keeps its session alive with fresh tokens, asked with its own header only.
        assert (await http.post("/session/refresh")).status_code == 403
        fresh = await http.post("/session/refresh", headers={"X-NVF-Page": "1"})
        assert fresh.status_code == 204 and fresh.headers["set-cookie"].startswith(f"{COOKIE}=")

        # A revoked client's session ends at once.
        async with server.db.session() as session:
            await api_clients.revoke(session, client_id)
        assert (await http.get("/")).headers.get("location") == "/login"
        assert (await http.get("/v1/whoami")).status_code == 401
        assert (await http.post("/session/refresh", headers={"X-NVF-Page": "1"})).status_code == 401

        out = await http.post("/logout")
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


async def test_operator_routes_refuse_a_region(server: Server) -> None:
    token = await server.token("01")
    for path in ("/v1/ops/groups", "/v1/ops/dead-letters", "/v1/ops/book", "/v1/ops/market-health"):
        r = await server.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403, path
    r = await server.http.post("/v1/ops/dead-letters/resend", json={"all": True},
                               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    operator = await server.token("operator")
    assert (await server.http.get("/v1/worklist", headers={"Authorization": f"Bearer {operator}"})).status_code == 403


async def test_dead_letter_resend_previews_then_moves_each_entry_back_to_its_stream(server: Server,
                                                                                    redis_client: Any) -> None:
    streams = Streams(server.settings.stream_prefix)
    bodies = []
    for i in range(3):
        offer = OfferPublished(offer_id=f"off-{tag()}-{i}", region="01", unit_hsa_id="SE2321000016-A1",
                               care_area="cataract", capacity=1, window_start=TODAY, window_end=TODAY, price_sek=1)
        bodies.append(new_envelope(offer, producer="01").to_json())
        await dead_letter(redis_client, streams.dead_letter, stream=streams.ingress("01"), group="intake",
                          entry_id=f"{i + 1}-0", body=bodies[-1], reason="boom", deliveries=5, consumer="test")
    letters = await list_dead_letters(redis_client, streams.dead_letter)
    listed = await server.get("operator", "/v1/ops/dead-letters")
    assert [d["id"] for d in listed["items"]] == [d.id for d in letters]
    assert listed["items"][0]["reason"] == "boom" and listed["items"][0]["type"] == "offer.published"

    before = await redis_client.xlen(streams.ingress("01"))
    preview = (await server.post("operator", "/v1/ops/dead-letters/resend", {"all": True, "dry_run": True})).json()
    assert [d["id"] for d in preview["would_resend"]] == [d.id for d in letters]
    assert len(await list_dead_letters(redis_client, streams.dead_letter)) == 3
    assert await redis_client.xlen(streams.ingress("01")) == before

    one = await server.post("operator", "/v1/ops/dead-letters/resend", {"ids": [letters[0].id, "9-9"]})
    assert one.status_code == 200
    assert [d["id"] for d in one.json()["resent"]] == [letters[0].id] and one.json()["missing"] == ["9-9"]
    rest = (await server.post("operator", "/v1/ops/dead-letters/resend", {"all": True})).json()
    assert len(rest["resent"]) == 2
    assert await list_dead_letters(redis_client, streams.dead_letter) == []
    tail = await redis_client.xrange(streams.ingress("01"), count=1000)
    resent = [f[DATA_FIELD.encode()].decode() for _, f in tail]
    assert all(b in resent for b in bodies)

    both = await server.post("operator", "/v1/ops/dead-letters/resend", {"ids": ["1-0"], "all": True})
    assert both.status_code == 422

    # An operator's write like any other: a key is required, a retry is answered from the first
    # (nothing resent twice), and every resend is audited.
    token = await server.token("operator")
    keyless = await server.http.post("/v1/ops/dead-letters/resend", json={"all": True},
                                     headers={"Authorization": f"Bearer {token}"})
    assert keyless.status_code == 400 and keyless.json()["invalid_params"][0]["name"] == "Idempotency-Key"
    await dead_letter(redis_client, streams.dead_letter, stream=streams.ingress("01"), group="intake",
                      entry_id="9-0", body=bodies[0], reason="boom", deliveries=5, consumer="test")
    first = await server.post("operator", "/v1/ops/dead-letters/resend", {"all": True}, **{"Idempotency-Key": "k-1"})
    length = await redis_client.xlen(streams.ingress("01"))
    again = await server.post("operator", "/v1/ops/dead-letters/resend", {"all": True}, **{"Idempotency-Key": "k-1"})
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    assert await redis_client.xlen(streams.ingress("01")) == length
    async with server.db.session() as session:
        audit = (await session.exec(select(AuditRow).where(AuditRow.role == "operator"))).all()
    done = [(a.action, a.status_code) for a in audit]
    assert done.count(("dead_letters.resend", 200)) == 3 and ("dead_letters.preview", 200) in done
    assert ("dead_letters.resend", 422) in done and ("dead_letters.resend", 400) in done


async def test_an_entry_read_and_never_acknowledged_is_listed_as_stuck_with_its_idle_time_and_deliveries(
        server: Server, redis_client: Any) -> None:
    stream, group = Streams(server.settings.stream_prefix).ingress("03"), f"probe-{tag()}"
    await redis_client.xgroup_create(stream, group, id="$", mkstream=True)
    await server.offer("03", f"off-{tag()}", 1)
    read = await redis_client.xreadgroup(group, "probe", {stream: ">"}, count=1)
    entry_id = read[0][1][0][0]
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    # Taken over by a second consumer, as a recovering worker would: a second delivery.
    await redis_client.xclaim(stream, group, "probe-2", min_idle_time=0, message_ids=[entry_id])

    groups = (await server.get("operator", "/v1/ops/groups?stuck_ms=0"))["groups"]
    probe = next(g for g in groups if g["stream"] == stream and g["group"] == group)
    assert probe["pending"] == 1 and probe["consumers"] == 2
    [stuck] = probe["stuck"]
    assert (stuck["id"], stuck["consumer"], stuck["deliveries"]) == (entry_id, "probe-2", 2)
    assert stuck["idle_ms"] >= 0
    # Pending but idle for less than a day: not stuck by that measure.
    patient = (await server.get("operator", "/v1/ops/groups?stuck_ms=86400000"))["groups"]
    assert next(g for g in patient if g["group"] == group)["stuck"] == []


async def test_the_book_lists_a_held_match_with_its_deadline_and_an_unanswered_referral(server: Server) -> None:
    t = tag()
    held, referred = f"case-{t}-h", f"case-{t}-r"
    await server.offer("03", f"off-{t}", 5)
    await server.request("01", f"req-{t}", [held, referred])
    for ref in (held, referred):
        await server.wait_for("a match", lambda ref=ref: _state(server, ref, "match_proposed"))
    for who, action, body in [("03", "accept", {}), ("01", "offer-to-patient", {}),
                              ("01", "patient-answer", {"accepted": True})]:
        assert (await server.case_command(who, referred, action, body)).status_code == 200
    await server.wait_for("the patient's answer", lambda: _state(server, referred, "patient_accepted"))
    # The referral is a sealed message the home region's own system sends, not an API call: recorded
    # as the notifier records it once delivered.
    runtime = server.app.state.nvf.runtime
    async with server.db.session() as session:
        await CaseLedger(session, runtime.context).apply(SendReferral(referred, referral_id=f"ref-{t}"),
                                                         correlation_id=f"corr-{t}", producer="notifier")
        await session.commit()
    await server.wait_for("the referral", lambda: _state(server, referred, "referred"))

    book = await server.get("operator", "/v1/ops/book")
    holds = {c["case_ref"]: c for c in book["holds"]}
    assert referred not in holds
    assert holds[held]["hold_due_at"][:10] >= book["today"] and holds[held]["awaiting"] == "provider"
    assert holds[held]["awaiting_region"] == "03"
    referrals = [c["case_ref"] for c in book["referrals"]]
    assert referred in referrals and held not in referrals


async def test_market_health_gives_fill_rate_and_expired_capacity_by_day(server: Server) -> None:
    t = tag()
    await server.offer("03", f"off-{t}", 4)
    await server.request("01", f"req-{t}", [f"case-{t}-{i}" for i in range(2)])
    for i in range(2):
        await server.wait_for("a match", lambda i=i: _state(server, f"case-{t}-{i}", "match_proposed"))
    health = await server.get("operator", "/v1/ops/market-health")
    fill = health["fill_rate"]["cataract"]
    assert fill and all(len(day) == 10 and day <= health["today"] for day in fill)
    assert any(0 < rate <= 1 for rate in fill.values())
    assert all(isinstance(by_day, dict) for by_day in health["capacity_expired_unused"].values())


async def _stream(http: httpx.AsyncClient, token: str, **params: Any) -> list[dict[str, Any]]:
    """The backlog the live stream sends first, up to its ': live' marker."""
    events: list[dict[str, Any]] = []
    async with http.stream("GET", "/v1/stream", params={"backlog": 500, **params},
                           headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            elif line == ": live":
                break
    return events


async def test_a_regions_stream_and_worklist_hold_only_what_concerns_it(server: Server) -> None:
    t = tag()
    mine, others = [f"case-{t}-m{i}" for i in range(2)], [f"case-{t}-x{i}" for i in range(2)]
    await server.offer("03", f"off-{t}", 10)
    await server.request("01", f"req-{t}-1", mine)
    await server.request("05", f"req-{t}-5", others)
    for ref in mine + others:
        await server.wait_for("matches", lambda ref=ref: _state(server, ref, "match_proposed"))

    seen_01 = await _stream(server.http, await server.token("01"))
    cases_01 = {e["case_ref"] for e in seen_01 if e["case_ref"]}
    assert set(mine) <= cases_01 and not set(others) & cases_01
    assert all(e["channel"] in (None, "01") or e["case_ref"] in mine for e in seen_01)
    assert not any(f"req-{t}-5" in e["summary"] for e in seen_01)
    # The provider sees the cases it holds slots for; the operator sees everything.
    cases_03 = {e["case_ref"] for e in await _stream(server.http, await server.token("03")) if e["case_ref"]}
    assert set(mine) | set(others) <= cases_03
    everything = await _stream(server.http, await server.token("operator"))
    assert set(mine) | set(others) <= {e["case_ref"] for e in everything}
    # Filters narrow what the caller may see, never widen it.
    only = await _stream(server.http, await server.token("01"), case=others[0])
    assert only == []
    one = await _stream(server.http, await server.token("operator"), case=mine[0], type="match.proposed")
    assert [(e["case_ref"], e["type"]) for e in one] == [(mine[0], "match.proposed")]

    work_03 = await server.get("03", "/v1/worklist")
    assert {c["case_ref"] for c in work_03["to_answer"]} == set(mine) | set(others)
    assert all(c["awaiting"] == "provider" and c["hold_due_at"] for c in work_03["to_answer"])
    work_01 = await server.get("01", "/v1/worklist")
    assert work_01["to_answer"] == []
    assert {c["case_ref"] for c in work_01["waiting_for_provider"]} == set(mine)
    assert {c["case_ref"] for c in work_01["near_guarantee"]} == set(mine)


async def test_stream_filters_by_region_care_area_and_correlation_narrow_to_those_events(server: Server) -> None:
    t = tag()
    await server.offer("03", f"off-{t}-c", 5)
    await server.offer("05", f"off-{t}-k", 5, care_area="knee-replacement")
    await server.request("01", f"req-{t}", [f"case-{t}"])
    await server.wait_for("match", lambda: _state(server, f"case-{t}", "match_proposed"))
    operator = await server.token("operator")

    def ours(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if t in e["summary"] or t in (e["case_ref"] or "")]

    by_05 = await _stream(server.http, operator, region="05")
    assert by_05 and all("05" in e["regions"] or "05" in (e["producer"], e["channel"]) for e in by_05)
    assert any(f"off-{t}-k" in e["summary"] for e in by_05)
    assert not any(f"off-{t}-c" in e["summary"] or f"req-{t}" in e["summary"] for e in by_05)

    knee = ours(await _stream(server.http, operator, care_area="knee-replacement"))
    assert knee and all(e["care_area"] == "knee-replacement" for e in knee)
    assert any(f"off-{t}-k" in e["summary"] for e in knee) and not any(e["case_ref"] for e in knee)
    cataract = ours(await _stream(server.http, operator, care_area="cataract"))
    assert any(f"off-{t}-c" in e["summary"] for e in cataract) and any(f"req-{t}" in e["summary"] for e in cataract)
    assert not any(f"off-{t}-k" in e["summary"] for e in cataract)

    everything = await _stream(server.http, operator)
    correlation = next(e["correlation_id"] for e in ours(everything) if f"off-{t}-k" in e["summary"])
    same = await _stream(server.http, operator, correlation_id=correlation)
    assert same and {e["correlation_id"] for e in same} == {correlation}
    assert {e["event_id"] for e in same} == {e["event_id"] for e in everything if e["correlation_id"] == correlation}


async def _state(server: Server, case_ref: str, state: str) -> bool:
    return await server.case_state(case_ref) == state


async def test_public_waiting_times_need_no_login_and_keep_small_cells_suppressed(server: Server) -> None:
    from marketplace.services import waiting_times

    empty = await server.http.get("/public/waiting-times.json", params={"care_area": "cataract"})
    assert empty.status_code == 200, empty.text
    assert len(empty.json()["items"]) == 21 and not any(v["has_data"] for v in empty.json()["items"])

    await waiting_times.import_sample(server.db)
    knees = await server.http.get("/public/waiting-times.json", params={"care_area": "knee-replacement"})
    assert knees.status_code == 200 and "set-cookie" not in knees.headers
    gotland = next(v for v in knees.json()["items"] if v["region"] == "09")
    assert gotland["has_data"] and gotland["completed"] == {
        "status": "completed", "suppressed": True, "count": None, "buckets": None, "share_within_90": None,
        "median_days": None, "mean_days": None}
    assert len(gotland["trend"]) == 13

    unknown = await server.http.get("/public/waiting-times.json", params={"care_area": "cardiology"})
    assert unknown.status_code == 422 and unknown.json()["invalid_params"][0]["rule"] == "known_care_area"
    ref = (await server.http.get("/public/reference.json")).json()
    assert len(ref["regions"]) == 21
    cataract = next(a for a in ref["care_areas"] if a["code"] == "cataract")
    assert "grå starr" in cataract["words"] and cataract["name"] == "Kataraktoperation"
