"""The pages against a real server: `nvf serve`'s app under uvicorn on a free port, with the workers,
a real Redis and a real database; a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from marketplace.adapters.database import Database
from marketplace.entrypoints.server import create_app
from marketplace.log_config import configure_logging
from marketplace.services import api_clients
from marketplace.settings import Settings
from workers.app import ROLES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Screenshots are kept as test artifacts here (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
TODAY = date.today()


@dataclass
class Server:
    base_url: str
    settings: Settings
    db: Database
    app: Any
    http: httpx.AsyncClient
    tokens: dict[str, str] = field(default_factory=dict)

    async def client(self, who: str) -> tuple[str, str]:
        """A new client (a person's login) for a region code or 'operator': (client_id, secret)."""
        async with self.db.session() as session:
            row, secret = await api_clients.create(session, name=f"test {who}",
                                                   role="operator" if who == "operator" else "region",
                                                   region=None if who == "operator" else who)
        return row.client_id, secret

    async def token(self, who: str) -> str:
        if who not in self.tokens:
            client_id, secret = await self.client(who)
            r = await self.http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                           "client_secret": secret})
            assert r.status_code == 200, r.text
            self.tokens[who] = r.json()["access_token"]
        return self.tokens[who]

    async def get(self, who: str, path: str) -> Any:
        r = await self.http.get(path, headers={"Authorization": f"Bearer {await self.token(who)}"})
        assert r.status_code == 200, r.text
        return r.json()

    async def post(self, who: str, path: str, body: Any, **headers: str) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"Authorization": f"Bearer {await self.token(who)}",
                                                              "Idempotency-Key": str(uuid.uuid4()), **headers})

    async def offer(self, region: str, offer_id: str, capacity: int, care_area: str = "cataract") -> None:
        org = {"01": "2321000016", "03": "2321000024", "05": "2321000040"}[region]
        r = await self.post(region, "/v1/offers", {
            "offer_id": offer_id, "unit_hsa_id": f"SE{org}-U{region}", "care_area": care_area, "capacity": capacity,
            "window_start": (TODAY + timedelta(days=7)).isoformat(),
            "window_end": (TODAY + timedelta(days=60)).isoformat(), "price_sek": 9800})
        assert r.status_code in (201, 202), r.text

    async def request(self, region: str, request_id: str, case_refs: list[str], waited_days: int = 100,
                      care_area: str = "cataract") -> None:
        r = await self.post(region, "/v1/requests", {
            "request_id": request_id, "care_area": care_area, "window_start": TODAY.isoformat(),
            "window_end": (TODAY + timedelta(days=90)).isoformat(),
            "patients": [{"case_ref": c, "waiting_since": (TODAY - timedelta(days=waited_days)).isoformat()}
                         for c in case_refs]})
        assert r.status_code in (201, 202), r.text

    async def case_command(self, who: str, case_ref: str, action: str, body: Any) -> httpx.Response:
        r = await self.http.get(f"/v1/cases/{case_ref}", headers={"Authorization": f"Bearer {await self.token(who)}"})
        assert r.status_code == 200, r.text
        return await self.post(who, f"/v1/cases/{case_ref}/{action}", body, **{"If-Match": r.headers["ETag"]})

    async def wait_for(self, what: str, check: Any, timeout_s: float = 60) -> Any:
        """Poll a real state until `check()` returns something truthy."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            value = await check()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def case_state(self, case_ref: str) -> str | None:
        r = await self.http.get(f"/v1/cases/{case_ref}",
                                headers={"Authorization": f"Bearer {await self.token('operator')}"})
        return r.json()["state"] if r.status_code == 200 else None


@pytest.fixture
def web_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"api_rate": "1000/second", "auto_clear_ms": 300})


@pytest.fixture
async def server(web_settings: Settings, database: Database, redis_client: Any) -> AsyncIterator[Server]:
    # Warnings and errors only, one JSON line each: a console traceback per retry of a worker
    # whose Redis connection dropped costs more than the retry, on a busy machine.
    configure_logging("json", "WARNING")
    app = create_app(web_settings, web_settings.redis_url or "", roles=ROLES, sweeper=False)
    # Open live streams (server-sent events) are cut at shutdown rather than waited for.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    deadline = asyncio.get_running_loop().time() + 60
    while not uv.started:
        if task.done() or asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.05)
    port = uv.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield Server(base, web_settings, database, app, http)
    uv.should_exit = True
    try:
        await asyncio.wait_for(task, 120)
    finally:
        # Back to the session's plain JSON logs (tests/conftest.py), never structlog's defaults: their
        # rich tracebacks cost seconds of CPU per error, so a worker still failing after a slow
        # shutdown stalled the next tests' teardown for good.
        configure_logging("json", "WARNING")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def login(browser: Any, server: Server, who: str) -> Any:
    """A new browser context logged in through the login form as a new client of `who`."""
    from playwright.async_api import expect

    client_id, secret = await server.client(who)
    context = await browser.new_context(base_url=server.base_url, viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto("/")
    await expect(page).to_have_url(f"{server.base_url}/login")
    await page.get_by_label("Client id").fill(client_id)
    await page.get_by_label("Secret").fill(secret)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(f"{server.base_url}/")
    return page
