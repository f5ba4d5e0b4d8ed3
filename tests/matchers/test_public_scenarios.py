"""The optimal clearing reaches the published optimum of every public scenario, and its output
passes the independent contract audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from matchers.allocation import Allocation
from matchers.audit import audit_allocation, summarize
from matchers.clearing import clear

from .conftest import load_public, scenario_path

NAMES = [
    "tiny",
    "small",
    "medium",
    pytest.param("large", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name", NAMES)
def test_optimal_reaches_the_expected_optimum(name: str, expected: dict[str, Any]) -> None:
    scenario = load_public(name)
    allocation = clear(scenario, "optimal")
    want = expected[name]
    assert allocation.patients == want["patients"]
    assert allocation.placed == want["max_allocated"]
    assert allocation.wait_days == want["max_wait_days"]
    assert allocation.total_cost_sek == pytest.approx(want["min_cost_sek"], rel=0.005)
    rows = allocation.rows()
    assert audit_allocation(scenario, rows) == []
    # The audit recomputes the objective from the scenario alone: it must agree with the solver.
    summary = summarize(scenario, rows)
    assert (summary.placed, summary.wait_days) == (allocation.placed, allocation.wait_days)
    assert summary.cost_sek == pytest.approx(allocation.total_cost_sek, abs=0.01)


@pytest.mark.parametrize("name", ["tiny", "small", "medium"])
def test_greedy_output_passes_the_audit(name: str) -> None:
    scenario = load_public(name)
    assert audit_allocation(scenario, clear(scenario, "greedy").rows()) == []


def test_tiny_equals_the_expected_allocation(tmp_path: Path) -> None:
    expected_file = scenario_path("tiny").with_name("tiny.expected.jsonl")
    want = [json.loads(line) for line in expected_file.read_text().splitlines() if line.strip()]
    out = tmp_path / "tiny.jsonl"
    clear(load_public("tiny"), "optimal").to_jsonl(out)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    keys = ("case_ref", "request_id", "offer_id", "reason")
    assert [{k: row[k] for k in keys} for row in got] == want


def test_greedy_on_medium_matches_first_come_first_served_figures() -> None:
    allocation = clear(load_public("medium"), "greedy")
    assert (allocation.placed, allocation.wait_days) == (2058, 547455)


def test_same_input_same_output() -> None:
    first = clear(load_public("medium"), "optimal")
    again = clear(load_public("medium"), "optimal")
    assert first.rows() == again.rows()
    assert clear(load_public("medium"), "greedy").rows() == clear(load_public("medium"), "greedy").rows()


def test_jsonl_round_trip(tmp_path: Path) -> None:
    allocation = clear(load_public("small"))
    allocation.to_jsonl(tmp_path / "a.jsonl")
    back = Allocation.from_jsonl(tmp_path / "a.jsonl")
    assert back.placements == allocation.placements
    assert (back.placed, back.wait_days, back.total_cost_sek) == (
        allocation.placed,
        allocation.wait_days,
        allocation.total_cost_sek,
    )
