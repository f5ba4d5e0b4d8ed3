"""`nvf serve` and `nvf clients` as an operator runs them: real processes on a real port."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.test_cli import NVF, delete_users, demo_env, run_nvf

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_clients_made_listed_and_revoked(tmp_path: Path, settings, database, redis_client):
    env = demo_env(tmp_path, settings)
    bad = run_nvf(["clients", "create", "--region", "99", "--name", "x"], env)
    assert bad.returncode == 2 and "region_code" in bad.stderr and "Traceback" not in bad.stderr
    made = run_nvf(["clients", "create", "--region", "01", "--name", "navigators", "--hsa-id", "SE2321000016-N1"],
                   env)
    assert made.returncode == 0, made.stderr
    client_id = re.search(r"client_id\s+(\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret\s+(\S+)", made.stdout).group(1)  # type: ignore[union-attr]
    listed = run_nvf(["clients", "list"], env)
    assert client_id in listed.stdout and secret not in listed.stdout

    port = _free_port()
    server = subprocess.Popen([*NVF, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"{base}/health", timeout=5)
                if health.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        failed = (server.stderr.read() if server.stderr else "") if server.poll() else health
        assert health is not None and health.status_code == 200, failed
        report = health.json()
        assert report["redis"]["status"] == "up" and report["database"]["status"] == "up"
        assert report["workers"]["status"] == "up" and report["workers"]["roles"] == [
            "intake", "matcher", "notifier", "timeline"]

        token = httpx.post(f"{base}/oauth/token", auth=(client_id, secret),
                           data={"grant_type": "client_credentials"}).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/v1/cases", headers=bearer).json()["items"] == []
        assert "swagger" in httpx.get(f"{base}/docs").text.lower()
        assert "/v1/cases/{case_ref}/allowed-actions" in httpx.get(f"{base}/openapi.json").json()["paths"]
        assert httpx.get(f"{base}/asyncapi.json").json()["asyncapi"].startswith("3.")
        assert httpx.get(f"{base}/asyncapi").status_code == 200

        assert run_nvf(["clients", "revoke", client_id], env).returncode == 0
        assert httpx.get(f"{base}/v1/cases", headers=bearer).status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        try:
            code = server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
            delete_users(settings)
    assert code == 0
