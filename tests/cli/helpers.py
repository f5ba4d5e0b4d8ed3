"""Running `nvf` as a user does: a real process, in a folder of its own, with only the settings given."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

NVF = [sys.executable, "-m", "marketplace.entrypoints.cli"]
REPO = Path(__file__).resolve().parents[2]


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment minus every setting CI or a developer may have exported, plus `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("NVF_") and k not in ("REDIS_URL", "DATABASE_URL")}
    # The checkout on the path, wherever the process runs (its folder is the test's own: no stray .env).
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.update(NVF_STATE_DIR=str(tmp_path / "state"), NVF_LOG_FORMAT="json")
    env.update(settings)
    return env


def run_nvf(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NVF, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def closed_port() -> int:
    """A local TCP port nothing listens on (it was free a moment ago: connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
