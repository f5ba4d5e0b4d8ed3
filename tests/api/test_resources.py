"""Every `/v1` resource on a real Redis and database with the workers running: what a region may
see and do, idempotency, concurrency control and problem details."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import select

from marketplace.adapters.api_orm import AuditRow, IdempotencyRow
from marketplace.adapters.database import Database
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import utcnow
from marketplace.entrypoints.api.schemas import OfferIn
from marketplace.entrypoints.api.writes import fingerprint
from marketplace.services import idempotency
from matchers.reference import regions
from tests.api.conftest import Api
from tests.api.scenario import clear, offer, request

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    return body


async def test_offers_and_requests_publish_read_list_withdraw(api: Api):
    created = await api.post("01", "/v1/offers", offer("off-1", capacity=3))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/offers/off-1"
    assert created.json()["remaining"] == 3 and created.json()["region"] == "01"

    read = await api.get("01", "/v1/offers/off-1")
    assert read.status_code == 200 and read.json()["offer_id"] == "off-1"
    etag = read.headers["etag"]
    assert etag.startswith('W/"')
    assert (await api.get("01", "/v1/offers/off-1", headers={"If-None-Match": etag})).status_code == 304
    # Another region's offer is as if it did not exist; the operator reads it.
    problem(await api.get("03", "/v1/offers/off-1"), 404)
    assert (await api.get("operator", "/v1/offers/off-1")).status_code == 200
    assert [o["offer_id"] for o in (await api.get("01", "/v1/offers")).json()["items"]] == ["off-1"]
    assert (await api.get("03", "/v1/offers")).json()["items"] == []

    # The same offer id again: intake refuses it, the API says it is a conflict, naming field and rule.
    dup = problem(await api.post("01", "/v1/offers", offer("off-1")), 409)
    assert dup["invalid_params"][0] == {"name": "offer_id", "rule": "unique_id", "reason": dup["invalid_params"][0]
                                        ["reason"]}

    problem(await api.post("03", "/v1/offers/off-1/withdrawal", {"reason_code": "other"}), 404)
    withdrawn = await api.post("01", "/v1/offers/off-1/withdrawal", {"reason_code": "unit_unavailable"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"

    made = await api.post("25", "/v1/requests", request("req-25", ["case-25-1", "case-25-2"]))
    assert made.status_code == 201, made.text
    assert (await api.get("25", "/v1/requests/req-25")).json()["status"] == "open"
    problem(await api.get("01", "/v1/requests/req-25"), 404)
    assert [c["case_ref"] for c in (await api.get("25", "/v1/cases")).json()["items"]] == ["case-25-1", "case-25-2"]
    assert (await api.get("01", "/v1/cases")).json()["items"] == []
    part = await api.post("25", "/v1/requests/req-25/withdrawal", {"case_refs": ["case-25-2"],
                                                                    "reason_code": "found_slot_in_home_region"})
    assert part.status_code == 200, part.text
    assert (await api.get("25", "/v1/cases/case-25-2")).json()["state"] == "withdrawn"

    # Every write is audited: who, what, which client, how it ended.
    async with api.db.session() as session:
        audit = (await session.exec(select(AuditRow))).all()
    actions = {(a.action, a.region, a.status_code) for a in audit}
    assert ("offer.publish", "01", 201) in actions and ("offer.publish", "01", 409) in actions
    assert ("offer.withdraw", "03", 404) in actions and ("request.withdraw", "25", 200) in actions
    assert {a.client_id for a in audit if a.region == "25"} == {api.client_ids["25"]}


async def test_bad_input_is_a_422_naming_the_field_and_the_rule(api: Api):
    body = problem(await api.post("01", "/v1/offers", {**offer("off-b"), "capacity": 0}), 422)
    assert body["invalid_params"][0]["name"] == "capacity"
    assert body["invalid_params"][0]["rule"] == "greater_than"
    body = problem(await api.post("01", "/v1/offers", {**offer("off-b"), "window_end": "2026-03-01"}), 422)
    assert body["invalid_params"][0]["name"] == "window_end"
    assert body["invalid_params"][0]["rule"] == "window_order"
    body = problem(await api.post("01", "/v1/offers", {**offer("off-b"), "region": "03"}), 422)
    assert body["invalid_params"][0] == {"name": "region", "rule": "extra_forbidden",
                                         "reason": body["invalid_params"][0]["reason"]}
    body = problem(await api.post("01", "/v1/offers", {**offer("off-b"), "care_area": "astrology"}), 422)
    assert body["invalid_params"][0]["name"] == "care_area"
    problem(await api.get("01", "/v1/offers", params={"limit": 0}), 422)
    problem(await api.get("01", "/v1/nothing-here"), 404)
    # Nothing of the refused input was stored.
    assert (await api.get("operator", "/v1/offers")).json()["items"] == []
    # A POST without a valid token never reaches its route either.
    problem(await api.http.post("/v1/offers", json=offer("off-b"), headers={"Idempotency-Key": "k1"}), 401)
    problem(await api.http.post("/v1/offers", json=offer("off-b"), headers={"Authorization": "Bearer nonsense"}), 401)

    # Refused before the route ran, and still audited: the caller if its token was read, else
    # "unknown"; the field and the rule, never the value sent.
    async with api.db.session() as session:
        audit = (await session.exec(select(AuditRow).where(AuditRow.action == "POST /v1/offers"))).all()
    unparsed = [a for a in audit if a.status_code == 422]
    assert {a.client_id for a in unparsed} == {api.client_ids["01"]}
    assert sorted(a.outcome.split(":")[0] for a in unparsed) == ["capacity", "region"]
    assert all("astrology" not in a.outcome for a in audit)
    unknown = [a for a in audit if a.status_code == 401]
    assert len(unknown) == 2 and {(a.client_id, a.role, a.region) for a in unknown} == {("unknown", "unknown", None)}
    # Reads are not writes: the refused GET left no row.
    assert all(a.method == "POST" for a in audit)


async def test_idempotency_keys(api: Api):
    problem(await api.post("01", "/v1/offers", offer("off-2"), key=None), 400)
    key = str(uuid.uuid4())
    first = await api.post("01", "/v1/offers", offer("off-2"), key=key)
    assert first.status_code == 201
    again = await api.post("01", "/v1/offers", offer("off-2"), key=key)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    # Done once: one offer, one intake verdict (a second publish would have been a 409 unique_id).
    assert len((await api.get("01", "/v1/offers")).json()["items"]) == 1
    # The same key with another body.
    body = problem(await api.post("01", "/v1/offers", offer("off-j"), key=key), 422)
    assert body["invalid_params"][0]["rule"] == "same_request"
    # Keys are per client: region 03 may use the same key for its own request.
    other = await api.post("03", "/v1/offers", offer("off-k", hsa="SE2321000024-B1"), key=key)
    assert other.status_code == 201, other.text
    # A key whose first request is still running.
    busy = str(uuid.uuid4())
    await api.token("01")
    print_ = fingerprint("POST", "/v1/offers", OfferIn.model_validate(offer("off-l")))
    claim = await idempotency.claim(api.db, api.client_ids["01"], busy, print_, 60)
    assert isinstance(claim, idempotency.Claimed)
    body = problem(await api.post("01", "/v1/offers", offer("off-l"), key=busy), 409)
    assert body["type"].endswith("idempotency-key-in-flight")
    body = problem(await api.post("01", "/v1/offers", offer("off-m"), key='""'), 400)
    assert body["invalid_params"][0]["rule"] == "key_format"
    # Each refusal left an audit row naming the client and how it ended; the malformed key is not stored.
    async with api.db.session() as session:
        audit = (await session.exec(select(AuditRow).where(AuditRow.region == "01"))).all()
    refusals = [(a.action, a.status_code, a.idempotency_key) for a in audit if a.status_code >= 400]
    assert sorted(refusals, key=str) == sorted([("offer.publish", 400, None), ("offer.publish", 422, key),
                                                ("offer.publish", 409, busy), ("offer.publish", 400, None)], key=str)
    assert {a.client_id for a in audit} == {api.client_ids["01"]}


async def test_a_case_between_its_parties(api: Api):
    assert (await api.post("01", "/v1/offers", offer("off-c", capacity=2))).status_code == 201
    assert (await api.post("25", "/v1/requests", request("req-c", ["case-1", "case-2"]))).status_code == 201
    await clear(api, "rnd-c")
    case = await api.get("25", "/v1/cases/case-1")
    assert case.status_code == 200 and case.json()["state"] == "match_proposed"
    etag = case.headers["etag"]
    assert etag == f'W/"{case.json()["version"]}"'

    # The provider sees the case it is asked to take; a third region sees nothing of it anywhere.
    assert (await api.get("01", "/v1/cases/case-1")).status_code == 200
    assert {m["case_ref"] for m in (await api.get("01", "/v1/matches")).json()["items"]} == {"case-1", "case-2"}
    match_id = case.json()["current_match_id"]
    assert (await api.get("25", f"/v1/matches/{match_id}")).status_code == 200
    for path in ("/v1/cases/case-1", "/v1/cases/case-1/timeline", "/v1/cases/case-1/allowed-actions",
                 f"/v1/matches/{match_id}"):
        missing = problem(await api.get("03", path), 404)
        absent = problem(await api.get("03", path.replace("case-1", "case-nn").replace(match_id, "mtch-nn")), 404)
        assert missing["detail"].split()[1] == absent["detail"].split()[1]  # the same answer, "no case ..."
    assert (await api.get("03", "/v1/cases")).json()["items"] == []
    assert (await api.get("03", "/v1/matches")).json()["items"] == []
    problem(await api.post("03", "/v1/cases/case-1/accept", {}, headers={"If-Match": etag}), 404)
    problem(await api.post("03", "/v1/cases/case-1/cancellation", {"reason": "other"}, headers={"If-Match": etag}), 404)

    # Allowed actions: the lifecycle's rules for this caller, never cached.
    allowed = await api.get("01", "/v1/cases/case-1/allowed-actions")
    assert allowed.headers["cache-control"] == "no-store"
    assert [a["action"] for a in allowed.json()["actions"]] == ["accept", "decline"]
    home = [a["action"] for a in (await api.get("25", "/v1/cases/case-1/allowed-actions")).json()["actions"]]
    assert home == ["withdrawal", "cancellation"]
    assert [a["action"] for a in (await api.get("operator", "/v1/cases/case-1/allowed-actions")).json()["actions"]] \
        == ["cancellation"]

    # Not the home region's to say; the operator may only cancel or close.
    problem(await api.post("25", "/v1/cases/case-1/accept", {}, headers={"If-Match": etag}), 403)
    problem(await api.post("operator", "/v1/cases/case-1/accept", {}, headers={"If-Match": etag}), 403)
    problem(await api.post("operator", "/v1/offers", offer("off-9")), 403)
    problem(await api.post("25", "/v1/clearing-rounds", {"round_id": "rnd-x", "care_area": "cataract",
                                                          "as_of": "2026-03-02"}), 403)
    # Concurrency: If-Match is required, and a stale one is refused with the current ETag.
    problem(await api.post("01", "/v1/cases/case-1/accept", {}), 428)
    stale = await api.post("01", "/v1/cases/case-1/accept", {}, headers={"If-Match": 'W/"1"'})
    problem(stale, 412)
    assert stale.headers["etag"] == etag

    accepted = await api.post("01", "/v1/cases/case-1/accept", {}, headers={"If-Match": etag})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "provider_accepted"
    assert accepted.headers["etag"] == f'W/"{accepted.json()["version"]}"'
    # The old ETag is stale now; accepting again is not possible in this state (409).
    problem(await api.post("01", "/v1/cases/case-1/accept", {}, headers={"If-Match": etag}), 412)
    conflict = problem(await api.post("01", "/v1/cases/case-1/accept", {},
                                      headers={"If-Match": accepted.headers["etag"]}), 409)
    assert conflict["state"] == "provider_accepted"

    # The home region carries on; a decline of the other match releases it.
    now = accepted.headers["etag"]
    offered = await api.post("25", "/v1/cases/case-1/offer-to-patient", None, headers={"If-Match": now})
    assert offered.status_code == 200 and offered.json()["state"] == "offered_to_patient"
    bad = problem(await api.post("25", "/v1/cases/case-1/patient-answer", {"accepted": "maybe"},
                                 headers={"If-Match": offered.headers["etag"]}), 422)
    assert bad["invalid_params"][0]["name"] == "accepted"
    answered = await api.post("25", "/v1/cases/case-1/patient-answer", {"accepted": True},
                              headers={"If-Match": offered.headers["etag"]})
    assert answered.json()["state"] == "patient_accepted"

    c2 = (await api.get("01", "/v1/cases/case-2")).headers["etag"]
    declined = await api.post("01", "/v1/cases/case-2/decline", {"reason_code": "no_capacity"},
                              headers={"If-Match": c2})
    assert declined.status_code == 200, declined.text
    # The decline ended the provider's part: the case is back on the book and out of its sight.
    problem(await api.get("01", "/v1/cases/case-2"), 404)
    assert (await api.get("25", "/v1/cases/case-2")).json()["state"] == "on_book"

    timeline = (await api.get("25", "/v1/cases/case-1/timeline")).json()
    assert timeline["verified"] is True
    types = [e["event_type"] for e in timeline["entries"]]
    assert types[:2] == ["case.need_identified", "case.placed_on_book"]
    assert "case.provider_accepted_match" in types and "case.patient_accepted_offer" in types
    # The case's own events are labelled and versioned as the case is; the bus's entries are
    # annotations beside them, which never move that version.
    assert timeline["chains"] == {"events": True, "annotations": True}
    events = [e for e in timeline["entries"] if e["kind"] == "event"]
    assert [e["version"] for e in events] == list(range(1, timeline["version"] + 1))
    assert all(not e["event_type"].startswith("case.") for e in timeline["entries"] if e["kind"] == "annotation")

    # The operator reads everything and cancels.
    assert {c["case_ref"] for c in (await api.get("operator", "/v1/cases")).json()["items"]} == {"case-1", "case-2"}
    c2_now = (await api.get("operator", "/v1/cases/case-2")).headers["etag"]
    cancelled = await api.post("operator", "/v1/cases/case-2/cancellation", {"reason": "entered_in_error"},
                               headers={"If-Match": c2_now})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert (await api.get("25", "/v1/messages")).status_code == 200
    # Refusals are audited too: the operator's attempt to publish an offer.
    async with api.db.session() as session:
        audit = (await session.exec(select(AuditRow).where(AuditRow.role == "operator"))).all()
    assert ("offer.publish", 403) in {(a.action, a.status_code) for a in audit}
    assert ("case.cancel", 200) in {(a.action, a.status_code) for a in audit}


async def test_messages_are_seen_by_their_two_organisations_only(api: Api):
    orgs = {code: region.org_number for code, region in regions().items()}

    def message(message_id: str, sender: str, recipient: str) -> SecureMessageRow:
        # Headers as delivery stores them; the sealed body is opaque here (never opened in this test).
        return SecureMessageRow(message_id=message_id, case_ref=f"case-{message_id}", message_type="match_proposal",
                                sender_org=orgs[sender], recipient_org=orgs[recipient],
                                recipient_address=f"addr-{recipient}", submitted_by=sender, sealed="c2VhbGVk")

    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    async with api.db.session() as session:
        session.add(message(mine, "01", "25"))
        session.add(message(theirs, "03", "25"))
        await session.commit()

    assert [m["message_id"] for m in (await api.get("01", "/v1/messages")).json()["items"]] == [mine]
    sent = await api.get("01", f"/v1/messages/{mine}")
    assert sent.status_code == 200 and sent.json()["sealed"] is None  # only its recipient gets the sealed form
    received = await api.get("25", f"/v1/messages/{mine}")
    assert received.status_code == 200 and received.json()["sealed"] == "c2VhbGVk"
    # Another region's message is answered exactly like one that does not exist.
    other = problem(await api.get("01", f"/v1/messages/{theirs}"), 404)
    missing = problem(await api.get("01", f"/v1/messages/{uuid.uuid4()}"), 404)
    assert other["detail"].split()[:2] == missing["detail"].split()[:2] == ["no", "message"]
    assert {m["message_id"] for m in (await api.get("25", "/v1/messages")).json()["items"]} == {mine, theirs}
    assert (await api.get("03", "/v1/messages")).json()["items"][0]["message_id"] == theirs


async def test_an_idempotency_key_is_forgotten_after_its_retention(api: Api):
    key = str(uuid.uuid4())
    assert (await api.post("01", "/v1/offers", offer("off-t"), key=key)).status_code == 201
    assert await idempotency.purge_expired(api.db) == 0  # still within api_idempotency_ttl_s
    # Past its retention: move the key's expiry into the past rather than wait for it.
    async with api.db.session() as session:
        row = await session.get(IdempotencyRow, (api.client_ids["01"], key))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
        await session.commit()
    assert await idempotency.purge_expired(api.db) == 1
    async with api.db.session() as session:
        assert await session.get(IdempotencyRow, (api.client_ids["01"], key)) is None
    # The same key now starts a new request, even with another body: no replay, no mismatch.
    anew = await api.post("01", "/v1/offers", offer("off-v"), key=key)
    assert anew.status_code == 201, anew.text
    assert "idempotent-replayed" not in anew.headers
    assert {o["offer_id"] for o in (await api.get("01", "/v1/offers")).json()["items"]} == {"off-t", "off-v"}


async def test_health_is_503_naming_the_part_that_is_down(api: Api):
    ready = await api.http.get("/health")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    # A database nobody listens on (port 1 refuses at once): the process stays up and says what is down.
    state = api.app.state.nvf
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    state.db = unreachable
    try:
        down = await api.http.get("/health")
    finally:
        state.db = api.db
        await unreachable.engine.dispose()
    assert down.status_code == 503 and down.headers["cache-control"] == "no-store"
    body = down.json()
    assert body["status"] == "unavailable"
    assert body["database"]["status"] == "down" and body["database"]["error"]
    assert body["redis"]["status"] == "up"
    assert (await api.http.get("/health")).status_code == 200
