"""A recorded log of the demo, replayed: under the policy the demo ran with it reproduces the
demo's own outcome (the replay is faithful); under another policy it differs. Real processes,
a real Redis and database (embedded, or the configured servers in the test's own namespace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo_regions.scenario import bus_id
from marketplace.replay.engine import Replay
from marketplace.replay.policies import POLICIES
from marketplace.replay.stream import RecordedRound, load_stream

pytestmark = pytest.mark.integration
NVF = [sys.executable, "-m", "marketplace.entrypoints.cli"]


def _nvf(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NVF, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[2])


def _env(tmp_path: Path, settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "NVF_DB_SCHEMA")}
    env.update(NVF_STATE_DIR=str(tmp_path / "state"), NVF_LOG_FORMAT="json", NVF_STREAM_PREFIX=settings.stream_prefix)
    if settings.db_schema:  # PostgreSQL: the test's own schema there, and the real Redis
        env.update(DATABASE_URL=settings.effective_database_url, NVF_DB_SCHEMA=settings.db_schema,
                   REDIS_URL=settings.redis_url or "")
    return env


@pytest.mark.slow
def test_a_recorded_demo_replays_to_the_demo_outcome_and_differs_under_another_policy(
        tmp_path, settings, database, redis_client):
    env = _env(tmp_path, settings)
    demo = _nvf(["demo", "--out", str(tmp_path / "A.jsonl")], env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    record = _nvf(["stream", "record", "--out", str(tmp_path / "log.json")], env)
    assert record.returncode == 0, record.stderr[-3000:]

    stream = load_stream(tmp_path / "log.json")
    rounds = [e for e in stream.events if isinstance(e, RecordedRound)]
    assert rounds and {r.policy for r in rounds} == {"optimal"}
    # The allocation file speaks the scenario's ids; the recorded log the bus's (demo_regions.scenario.bus_id).
    outcome = {bus_id("case", r["case_ref"]): (bus_id("off", r["offer_id"]) if r["offer_id"] else None)
               for r in map(json.loads, (tmp_path / "A.jsonl").read_text().splitlines())}

    faithful = Replay(stream, POLICIES["recorded"]).run()
    replayed = {c: (r.proposed[0] if r.proposed else None) for c, r in faithful.cases.items()}
    assert replayed == outcome
    # The parties' recorded answers take effect on the same proposals: the same patients accepted.
    accepted_in_log = {c for (c, _, party), a in stream.answers.items() if party == "patient" and a.answer == "accept"}
    assert accepted_in_log and {c for c, r in faithful.cases.items() if r.placed_at} == accepted_in_log

    other = Replay(stream, POLICIES["fcfs"]).run()
    differs = {c for c, r in other.cases.items() if (r.proposed[0] if r.proposed else None) != outcome[c]}
    assert differs

    report = _nvf(["replay", str(tmp_path / "log.json"), "--policy", "recorded", "--policy", "fcfs",
                   "--json", str(tmp_path / "R.json")], env)
    assert report.returncode == 0, report.stderr[-3000:]
    rows = {p["label"]: p["metrics"] for p in json.loads((tmp_path / "R.json").read_text())["policies"]}
    assert rows["recorded"]["placed"] == len(accepted_in_log)
    assert rows["recorded"] != rows["fcfs"]


def test_recording_an_empty_marketplace_says_so(tmp_path, settings, database):
    result = _nvf(["stream", "record", "--out", str(tmp_path / "log.json")], _env(tmp_path, settings), timeout=120)
    assert result.returncode == 2
    assert "no clearing round" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "log.json").exists()
