"""Shared fixtures: the public scenarios live in the `shared` folder beside the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from matchers.model import Scenario
from matchers.scenario import load_scenario

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SCENARIOS = SHARED / "scenarios"


def scenario_path(name: str) -> Path:
    path = SCENARIOS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"public scenario {path} not found (the shared folder beside the repo is absent)")
    return path


def load_public(name: str) -> Scenario:
    return load_scenario(scenario_path(name))


@pytest.fixture(scope="session")
def expected() -> dict[str, Any]:
    path = SCENARIOS / "expected.json"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared folder beside the repo is absent)")
    result: dict[str, Any] = json.loads(path.read_text())
    return result
