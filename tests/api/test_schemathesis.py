"""Schemathesis against the served OpenAPI document: generated requests to every operation, on a
real server on 127.0.0.1 (uvicorn, with intake running), never get a server error."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from marketplace.entrypoints.server import create_app
from marketplace.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _openapi() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        # The document does not depend on the settings; this app is never started.
        app = create_app(Settings(state_dir=Path(tmp), database_url="sqlite+aiosqlite://"), "redis://127.0.0.1:1")
        return app.openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@dataclass
class Served:
    base_url: str
    headers: dict[str, str]


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import redis

    from marketplace.access import user_name
    from marketplace.parties import all_parties

    tmp = tmp_path_factory.mktemp("schemathesis")
    tag = uuid.uuid4().hex[:8]
    config = Settings(redis_url=redis_url, database_url=f"sqlite+aiosqlite:///{tmp / 'marketplace.db'}",
                      state_dir=tmp / "state", stream_prefix=f"nvf-test-st{tag}", consumer_name=f"st-{tag}",
                      api_rate="100000/second", api_outcome_wait_s=3.0, polling_interval_ms=20, log_format="json",
                      log_level="WARNING")
    app = create_app(config, redis_url, roles=("intake",), sweeper=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    from marketplace.services import api_clients

    async def client() -> tuple[str, str]:
        async with app.state.nvf.db.session() as session:
            row, secret = await api_clients.create(session, name="schemathesis", role="region", region="01")
        return row.client_id, secret

    client_id, secret = asyncio.run_coroutine_threadsafe(client(), _loop_of(server)).result(30)
    token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                   "client_secret": secret}).json()["access_token"]
    try:
        yield Served(base, {"Authorization": f"Bearer {token}"})
    finally:
        server.should_exit = True
        thread.join(60)
        admin = redis.Redis.from_url(redis_url)
        keys = list(admin.scan_iter(match=f"{config.stream_prefix}:*", count=500))
        if keys:
            admin.delete(*keys)
        admin.execute_command("ACL", "DELUSER", *[user_name(config.stream_prefix, p) for p in all_parties()])
        admin.close()


def _loop_of(server: uvicorn.Server) -> asyncio.AbstractEventLoop:
    return server.servers[0].get_loop()


@schema.parametrize()
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_with_a_server_error(case: schemathesis.Case, served: Served) -> None:
    response = case.call(base_url=served.base_url, headers=served.headers, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
