"""`nvf replay` and `nvf stream generate` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path

NVF = [sys.executable, "-m", "marketplace.entrypoints.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _nvf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NVF, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow  # generates, replays and charts a stream in two processes
def test_generate_then_replay_a_stream_with_report_and_charts(tmp_path: Path) -> None:
    stream = tmp_path / "small-stream.json"
    made = _nvf("stream", "generate", str(shared_path("scenarios", "small.json")), "--weeks", "6", "--seed", "5",
                "--scale", "0.5", "--out", str(stream))
    assert made.returncode == 0, made.stderr
    again = _nvf("stream", "generate", str(shared_path("scenarios", "small.json")), "--weeks", "6", "--seed", "5",
                 "--scale", "0.5", "--out", str(tmp_path / "again.json"))
    assert again.returncode == 0 and (tmp_path / "again.json").read_bytes() == stream.read_bytes()

    report, charts = tmp_path / "r.json", tmp_path / "c.png"
    run = _nvf("replay", str(stream), "--policy", "continuous", "--policy", "fcfs", "--policy", "monthly",
               "--publish-before-breach", "21", "--json", str(report), "--charts", str(charts))
    assert run.returncode == 0, run.stderr
    assert "hindsight optimum" in run.stdout and "publishing 21 days before the breach" in run.stdout
    data = json.loads(report.read_text())
    assert [p["label"] for p in data["policies"]] == ["continuous", "fcfs", "monthly", "continuous+pre21d",
                                                       "fcfs+pre21d", "monthly+pre21d"]
    assert charts.read_bytes()[:4] == b"\x89PNG"


def test_a_shipped_sample_replays_by_name() -> None:
    run = _nvf("replay", "knee-replacement", "--policy", "weekly")
    assert run.returncode == 0, run.stderr
    assert "weekly" in run.stdout


def test_mistakes_get_one_clear_line() -> None:
    missing = _nvf("replay", "no-such-stream.json")
    assert missing.returncode == 2 and "stream refused" in missing.stderr and "Traceback" not in missing.stderr
    bogus = _nvf("replay", "cataract", "--policy", "sometimes")
    assert bogus.returncode == 2 and "'sometimes' is not a policy" in bogus.stderr
    scenario = _nvf("stream", "generate", "no-such-scenario.json", "--out", "x.json")
    assert scenario.returncode == 2 and "scenario refused" in scenario.stderr and "Traceback" not in scenario.stderr
