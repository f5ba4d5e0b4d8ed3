from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from marketplace.entrypoints.commands.match import register
from matchers.audit import audit_allocation
from matchers.scenario import load_scenario

from .conftest import scenario_path


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("other")
    def other() -> None:  # a second command keeps Typer from collapsing `match` into the root
        """Placeholder."""

    return app


def test_match_writes_a_valid_allocation(tmp_path: Path) -> None:
    source = scenario_path("small")
    out = tmp_path / "out" / "small.jsonl"
    result = CliRunner().invoke(_app(), ["match", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "137 / 253" in result.output and "30 576" in result.output and "time taken" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 253
    assert audit_allocation(load_scenario(source), rows) == []
    assert [p.name for p in out.parent.iterdir()] == ["small.jsonl"]  # no temp file left behind


def test_match_greedy_with_explanations(tmp_path: Path) -> None:
    out = tmp_path / "tiny.jsonl"
    args = ["match", str(scenario_path("tiny")), "--out", str(out), "--policy", "greedy", "--explain"]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "greedy" in result.output and "req-knee" in result.output and "no_feasible_offer" in result.output
    assert len(out.read_text().splitlines()) == 4


def test_a_malformed_scenario_writes_nothing_and_exits_2(tmp_path: Path) -> None:
    data = json.loads(scenario_path("tiny").read_text())
    data["offers"][1]["region"] = "99"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(_app(), ["match", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert "offers[1] (off-B).region: unknown region code '99' [known_region]" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_a_missing_scenario_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["match", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "cannot read the file" in result.stderr and "[readable]" in result.stderr
