"""Settings follow pydantic-settings' conventions (`NVF_` prefix, `.env`) and every documented name works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from marketplace.settings import Settings, env_names

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_variables() -> set[str]:
    section = README.read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {name for row in section.splitlines() if row.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_documented_variable_is_a_setting() -> None:
    names = {name for choices in env_names().values() for name in choices}
    documented = documented_variables()
    assert {"REDIS_URL", "DATABASE_URL", "NVF_STATE_DIR", "NVF_API_PORT", "NVF_POLLING_MS"} <= documented
    assert documented <= names, documented - names


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("REDIS_URL", "redis://h:1/0", "redis_url", "redis://h:1/0"),
    ("NVF_REDIS_URL", "redis://h:2/0", "redis_url", "redis://h:2/0"),
    ("DATABASE_URL", "sqlite+aiosqlite://", "database_url", "sqlite+aiosqlite://"),
    ("NVF_POLLING_MS", "25", "polling_interval_ms", 25),
    ("NVF_BATCH_SIZE", "50", "batch_size", 50),
    ("NVF_API_OUTCOME_WAIT_S", "2.5", "api_outcome_wait_s", 2.5),
])
def test_each_name_sets_its_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str,
                                  field: str, expected: object) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    assert getattr(Settings(), field) == expected


def test_dot_env_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("NVF_BATCH_SIZE", "NVF_STREAM_PREFIX", "REDIS_URL", "NVF_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("NVF_BATCH_SIZE=7\nNVF_STREAM_PREFIX=from-file\nREDIS_URL=redis://file:1/0\n"
                                   "POSTGRES_PASSWORD=not-ours\n", encoding="utf-8")
    monkeypatch.setenv("NVF_STREAM_PREFIX", "from-env")
    settings = Settings()
    assert (settings.batch_size, settings.stream_prefix, settings.redis_url) == (7, "from-env", "redis://file:1/0")


def test_code_still_sets_fields_by_name() -> None:
    settings = Settings(redis_url="redis://x:1/0", polling_interval_ms=20, state_dir=Path("s"))
    assert (settings.redis_url, settings.polling_interval_ms, settings.state_dir) == ("redis://x:1/0", 20, Path("s"))
