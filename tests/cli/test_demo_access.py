"""`nvf demo` runs with the parties' Redis users on, on the embedded Redis and on a real one: it applies
them, and each worker role, the scheduler, the operator and the regions that take part connect as
their own user (seen on the server while the demo runs)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from events.parties import OPERATOR, SERVICE_ROLES
from marketplace.access import supports_selectors, user_name
from marketplace.adapters.embedded_redis import RECORD
from marketplace.parties import all_parties
from tests.cli.helpers import NVF, REPO
from tests.conftest import shared_path
from tests.integration.test_cli import delete_users, demo_env

pytestmark = pytest.mark.integration

GUARD_S = 300  # a guard against a hang, not a speed limit


def _server(settings: Any, state: Path) -> redis.Redis | None:
    """A client of the server the demo runs on: the configured one, or the embedded one it started."""
    if settings.db_schema:  # demo_env: on PostgreSQL the demo uses the real Redis
        return redis.Redis.from_url(settings.redis_url)
    record = state / "redis" / RECORD
    if not record.exists():
        return None
    return redis.Redis(unix_socket_path=json.loads(record.read_text())["socket"])


def _users_connected(server: redis.Redis, prefix: str) -> set[str]:
    return {c["user"] for c in server.client_list() if str(c.get("user", "")).startswith(f"{prefix}-")}


def _version(server: redis.Redis) -> str:
    return str(server.info("server")["redis_version"])


def test_the_demo_applies_the_parties_users_and_each_connects_as_its_own(tmp_path: Path, settings: Any,
                                                                         database: Any) -> None:
    prefix = settings.stream_prefix
    tiny = shared_path("scenarios", "tiny.json")
    regions = {o["region"] for o in json.loads(tiny.read_text())["offers"]} | \
        {r["region"] for r in json.loads(tiny.read_text())["requests"]}
    expected = {user_name(prefix, party) for party in (*SERVICE_ROLES, OPERATOR, *regions)}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    seen: set[str] = set()
    versions: set[str] = set()
    with out.open("w") as stdout, err.open("w") as stderr:
        demo = subprocess.Popen([*NVF, "demo", "--scenario", str(tiny)], env=demo_env(tmp_path, settings),
                                cwd=REPO, stdout=stdout, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + GUARD_S
            # Watched on the server while the demo runs: who is connected, as which user.
            while demo.poll() is None and not expected <= seen and time.monotonic() < deadline:
                server = _server(settings, tmp_path / "state")
                if server is not None:
                    try:
                        seen |= _users_connected(server, prefix)
                        versions.add(_version(server))
                    except redis.ConnectionError:
                        pass  # the embedded server is not up yet, or already stopped
                    finally:
                        server.close()
                time.sleep(0.02)
            demo.wait(timeout=GUARD_S)
        finally:
            if demo.poll() is None:
                demo.kill()
            delete_users(settings)
    stderr_text = err.read_text()
    assert demo.returncode == 0, stderr_text[-3000:]
    assert "placed 2 of 4 patients" in out.read_text()
    assert expected <= seen, sorted(expected - seen)
    # The demo said so itself: every party's user applied, with the rules the server can hold.
    lines = [json.loads(line) for line in stderr_text.splitlines() if line.startswith("{")]
    (applied,) = [line for line in lines if line["event"] == "access.applied"]
    assert (applied["prefix"], applied["users"]) == (prefix, len(all_parties()))
    assert versions == {applied["redis_version"]}  # the server it ran on: embedded 6.2, or the configured one
    assert applied["key_permissions"] == ("read/write split, selectors" if supports_selectors(applied["redis_version"])
                                          else "one key set per user (Redis 6.2)")
