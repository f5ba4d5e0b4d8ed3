"""Processes starting on a fresh database: every worker role at once migrates it exactly once and
none crashes (issue 11: four roles on a fresh PostgreSQL raced on creating the tables and two
crashed); with automatic migration off a process refuses a schema that is behind, in one line."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from marketplace.adapters import schema
from marketplace.adapters.database import Database
from marketplace.errors import ConfigError
from marketplace.settings import Settings
from tests.integration.test_cli import run_nvf
from tests.reliability.conftest import Workers, wait_for, worker_env
from workers.app import ROLES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def processes(tmp_path: Path, redis_client: object) -> Iterator[Workers]:
    """`nvf run` processes; `redis_client` (after them) removes their streams and users."""
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Workers(logs)
    yield started
    started.stop_all()


def _start_all_at_once(processes: Workers, env: dict[str, str]) -> dict[str, subprocess.Popen[bytes]]:
    procs = {role: processes.start(role, [role], env) for role in ROLES}

    def settled() -> bool:  # each one started its workers, or ended
        return all(p.poll() is not None or "workers.started" in processes.log(r) for r, p in procs.items())

    wait_for(settled, 180, "every role to start")
    return procs


async def test_every_role_started_at_once_on_a_fresh_database_migrates_it_once(
        settings: Settings, empty_db: Database, processes: Workers) -> None:
    procs = _start_all_at_once(processes, worker_env(settings))

    crashed = {role: processes.log(role)[-2000:] for role, p in procs.items() if p.poll() is not None}
    assert crashed == {}
    tracebacks = {role: processes.log(role)[-3000:] for role in ROLES if "Traceback" in processes.log(role)}
    assert tracebacks == {}
    assert await schema.current(empty_db) == schema.head()
    assert await schema.differences(empty_db) == []
    # One of them ran the migration; the others waited on its lock and found the schema at head.
    migrated = [role for role in ROLES if '"db.migrated"' in processes.log(role)]
    assert len(migrated) == 1, migrated


def _refusal(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == ConfigError.exit_code
    # Besides the log's records (JSON lines, e.g. the Redis users applied before), one line for the user.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert "nvf db upgrade" in lines[0] and "behind" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


async def test_without_auto_migration_a_worker_refuses_a_schema_behind_in_one_line(
        settings: Settings, empty_db: Database, redis_client: object) -> None:
    env = worker_env(settings, NVF_DB_AUTO_MIGRATE="false", COLUMNS="60")  # a narrow terminal: still one line
    _refusal(run_nvf(["run", "--role", "intake"], env, timeout=120))
    # Nothing was created behind the refusal.
    assert await schema.current(empty_db) is None


async def test_without_auto_migration_the_api_refuses_a_schema_behind_in_one_line(
        settings: Settings, empty_db: Database) -> None:
    env = worker_env(settings, NVF_DB_AUTO_MIGRATE="false", NVF_API_PORT="1")  # never gets as far as listening
    _refusal(run_nvf(["serve", "--no-workers"], env, timeout=120))


def _compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    return services


def test_compose_runs_the_migration_once_before_the_workers_and_the_api() -> None:
    services = _compose()
    migrate = services["migrate"]
    assert migrate["command"] == ["nvf", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert "migrate" not in migrate["depends_on"]
    for name in [*ROLES, "api"]:
        service = services[name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
        # They do not migrate themselves: a schema behind stops them.
        assert service["environment"]["NVF_DB_AUTO_MIGRATE"] == "false", name
    assert {name for name, s in services.items() if s.get("command", [None])[:2] == ["nvf", "run"]} == set(ROLES)


def test_compose_publishes_on_loopback_only_and_never_on_the_usual_ports() -> None:
    published = {name: s["ports"] for name, s in _compose().items() if s.get("ports")}
    assert set(published) == {"redis", "postgres", "api"}
    for name, ports in published.items():
        for port in ports:
            # "127.0.0.1:${VARIABLE:-default}:container"
            found = re.fullmatch(r"127\.0\.0\.1:\$\{NVF_\w+_PORT:-(\d+)\}:(\d+)", port)
            assert found is not None, (name, port)
            # A Redis or PostgreSQL already on the host keeps its port.
            assert int(found[1]) not in (6379, 5432), (name, port)


async def test_the_compose_commands_as_processes_migrate_once_then_start_the_workers(
        settings: Settings, empty_db: Database, processes: Workers) -> None:
    """What `docker compose up` runs, in its order, minus Docker: `migrate`, then every role with the
    compose file's environment (automatic migration off)."""
    services = _compose()
    migrate = run_nvf(services["migrate"]["command"][1:], worker_env(settings))  # run_nvf adds `nvf`
    assert migrate.returncode == 0, migrate.stderr
    off = str(services["intake"]["environment"]["NVF_DB_AUTO_MIGRATE"])
    procs = _start_all_at_once(processes, worker_env(settings, NVF_DB_AUTO_MIGRATE=off))

    assert {role: p.poll() for role, p in procs.items()} == dict.fromkeys(ROLES)  # all running
    assert not [role for role in ROLES if '"db.migrated"' in processes.log(role)]
