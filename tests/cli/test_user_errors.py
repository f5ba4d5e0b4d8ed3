"""A user's mistake or an unreachable service: one line on stderr, no traceback, the kind's own exit code.

Each case runs `nvf` as a real process, the way a person at a terminal (or a script checking `$?`)
meets it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from marketplace.errors import BadInput, ConfigError, OutputPathError, ServiceUnavailable
from tests.cli.helpers import clean_env, closed_port, run_nvf
from tests.conftest import shared_path

TINY = "<tiny scenario>"


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_the_kinds_have_distinct_nonzero_exit_codes() -> None:
    codes = [kind.exit_code for kind in (BadInput, ServiceUnavailable, OutputPathError, ConfigError)]
    assert 0 not in codes and 1 not in codes and len(set(codes)) == len(codes)


@pytest.mark.parametrize(("variable", "value", "rule"), [
    ("NVF_BATCH_SIZE", "0", "greater than or equal to 1"),
    ("NVF_LOG_FORMAT", "xml", "'auto', 'json' or 'console'"),
    ("NVF_POLLING_MS", "soon", "valid integer"),
    ("NVF_DB_SCHEMA", "Bad-Schema", "should match pattern"),
])
def test_a_bad_setting_names_the_variable_and_the_rule(tmp_path: Path, variable: str, value: str, rule: str) -> None:
    result = run_nvf(["config"], clean_env(tmp_path, **{variable: value}), tmp_path)
    assert_one_line(result, ConfigError.exit_code, variable, repr(value), rule)


def test_a_bad_setting_in_dot_env_is_named_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("NVF_API_RATE=often\n", encoding="utf-8")
    result = run_nvf(["config"], clean_env(tmp_path), tmp_path)
    assert_one_line(result, ConfigError.exit_code, "NVF_API_RATE", "'often' is not a rate")


def test_an_unreachable_redis_names_the_url_without_its_password(tmp_path: Path) -> None:
    url = f"redis://nvf:s3cret-pw@127.0.0.1:{closed_port()}/0"
    result = run_nvf(["tail", "--count", "1"], clean_env(tmp_path, REDIS_URL=url), tmp_path)
    line = assert_one_line(result, ServiceUnavailable.exit_code, "Redis at redis://nvf:***@127.0.0.1:", "REDIS_URL")
    assert "s3cret-pw" not in result.stderr + result.stdout, line


def test_an_unreachable_database_names_the_url_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://nvf:s3cret-pw@127.0.0.1:{closed_port()}/nvf"
    result = run_nvf(["stats"], clean_env(tmp_path, DATABASE_URL=url), tmp_path)
    line = assert_one_line(result, ServiceUnavailable.exit_code, "database at postgresql+asyncpg://nvf:***@127.0.0.1:",
                           "DATABASE_URL")
    assert "s3cret-pw" not in result.stderr + result.stdout, line


@pytest.mark.parametrize("args", [
    ["stats", "--today", "2026-13-01"],
    ["waits", "--today", "2026-13-01"],
    ["agreements", "search", "grå starr", "--as-of", "2026-13-01"],
])
def test_a_bad_date_is_one_line(tmp_path: Path, args: list[str]) -> None:
    option = args[-2]
    result = run_nvf(args, clean_env(tmp_path), tmp_path)
    assert_one_line(result, BadInput.exit_code, f"{option} '2026-13-01' is not a date", "YYYY-MM-DD")


@pytest.mark.parametrize("args", [
    ["match", TINY, "--out", "blocked/A.jsonl"],
    ["demo", "--out", "blocked/run/A.jsonl"],
    ["asyncapi", "--out", "blocked/asyncapi.json"],
    ["stream", "generate", TINY, "--out", "blocked/stream.json"],
])
def test_an_output_folder_that_cannot_be_made_is_one_line_before_any_work(tmp_path: Path, args: list[str]) -> None:
    args = [str(shared_path("scenarios", "tiny.json")) if a == TINY else a for a in args]
    (tmp_path / "blocked").write_text("a file where the folder should be")
    result = run_nvf(args, clean_env(tmp_path), tmp_path)
    assert_one_line(result, OutputPathError.exit_code, "cannot create the folder blocked", "blocked is a file",
                    "choose another path")
    assert not (tmp_path / "state" / "redis").exists()  # the demo started nothing


def test_a_missing_output_folder_is_made(tmp_path: Path) -> None:
    result = run_nvf(["asyncapi", "--out", "new/folder/asyncapi.json"], clean_env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "folder" / "asyncapi.json").stat().st_size > 0


def test_reads_on_a_fresh_store_show_an_empty_market_not_a_traceback(tmp_path: Path) -> None:
    stats = run_nvf(["stats"], clean_env(tmp_path), tmp_path)
    assert stats.returncode == 0 and "Traceback" not in stats.stderr, stats.stderr[-2000:]
    assert "withdrawn" in stats.stdout
    timeline = run_nvf(["timeline", "case-1"], clean_env(tmp_path), tmp_path)
    assert "Traceback" not in timeline.stderr + timeline.stdout, timeline.stderr[-2000:]
