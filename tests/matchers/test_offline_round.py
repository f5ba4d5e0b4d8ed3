"""The offline round stays lean: `nvf match` loads only the matcher, and its output is exactly JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from matchers.allocation import Allocation, Placement

from .conftest import scenario_path

_amount = st.one_of(st.integers(min_value=0, max_value=10**9),
                    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))


@given(placements=st.lists(st.builds(
    Placement,
    case_ref=st.text(min_size=1, max_size=20),
    request_id=st.text(min_size=1, max_size=20),
    offer_id=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    reason=st.sampled_from([None, "no_feasible_offer", "capacity_exhausted"]),
    cost_sek=_amount, price_sek=_amount, ancillary_cost_sek=_amount, distance_km=_amount,
    wait_days=st.integers(min_value=0, max_value=10**6),
), max_size=20))
def test_jsonl_lines_are_what_json_dumps_writes(placements: list[Placement]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "a.jsonl"
        Allocation(tuple(placements)).to_jsonl(out)
        written = out.read_text(encoding="utf-8")
        expected = "".join(json.dumps(p.to_row(), ensure_ascii=False) + "\n" for p in placements)
        assert written == expected
        assert Allocation.from_jsonl(out).placements == tuple(placements)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)


def test_nvf_match_imports_neither_the_database_nor_the_bus(tmp_path: Path) -> None:
    out = tmp_path / "a.jsonl"
    code = (
        "import sys\n"
        "from marketplace.entrypoints.cli import app\n"
        "try:\n"
        f"    app(['match', {str(scenario_path('small'))!r}, '--out', {str(out)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in ('sqlalchemy', 'sqlmodel', 'redis', 'faststream', 'pydantic', 'workers',\n"
        "                           'marketplace.adapters', 'marketplace.services') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    assert out.is_file() and len(out.read_text().splitlines()) > 0


def test_nvf_help_still_lists_every_command() -> None:
    done = _run("from marketplace.entrypoints.cli import app\napp(['--help'])")
    listed = done.stdout
    for command in ("config", "demo", "run", "publish", "tail", "timeline", "asyncapi", "match", "keys", "case",
                    "stats", "dlq", "access"):
        assert f" {command} " in listed, command


def test_a_lazily_loaded_group_runs_its_subcommands() -> None:
    done = _run("from marketplace.entrypoints.cli import app\napp(['keys', '--help'])")
    assert "rotate" in done.stdout and "init" in done.stdout
