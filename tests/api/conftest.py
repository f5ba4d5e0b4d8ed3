"""The region API against a real Redis and a real database, with the workers running in its lifespan."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from marketplace.adapters.database import Database
from marketplace.entrypoints.server import create_app
from marketplace.services import api_clients
from marketplace.settings import Settings
from workers.app import ROLES

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    settings: Settings
    db: Database
    tokens: dict[str, str] = field(default_factory=dict)
    client_ids: dict[str, str] = field(default_factory=dict)

    async def client(self, who: str, *, hsa_id: str | None = None) -> tuple[str, str]:
        """A new API client for a region code or 'operator': (client_id, secret)."""
        async with self.db.session() as session:
            row, secret = await api_clients.create(
                session, name=f"test {who}", role="operator" if who == "operator" else "region",
                region=None if who == "operator" else who, hsa_id=hsa_id)
        return row.client_id, secret

    async def token(self, who: str) -> str:
        if who not in self.tokens:
            client_id, secret = await self.client(who)
            response = await self.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                                  "client_id": client_id, "client_secret": secret})
            assert response.status_code == 200, response.text
            self.tokens[who] = response.json()["access_token"]
            self.client_ids[who] = client_id
        return self.tokens[who]

    async def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(who)}", **extra}

    async def get(self, who: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**await self.headers(who), **kwargs.pop("headers", {})}
        return await self.http.get(path, headers=headers, **kwargs)

    async def post(self, who: str, path: str, body: Any = None, *, key: str | None = "new",
                   headers: dict[str, str] | None = None) -> httpx.Response:
        """POST as `who`; `key="new"` sends a fresh Idempotency-Key, None sends none."""
        extra = dict(headers or {})
        if key is not None:
            extra["Idempotency-Key"] = str(uuid.uuid4()) if key == "new" else key
        return await self.http.post(path, json=body, headers={**await self.headers(who), **extra})

    def set_clock(self, clock: Clock) -> None:
        runtime = self.app.state.nvf.runtime
        runtime.context.clock = clock


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    # Tests poll; the rate limit has its own test with a low rate.
    return settings.model_copy(update={"api_rate": "100000/second", "api_outcome_wait_s": 30.0})


@pytest.fixture
async def api(api_settings: Settings, database: Database, redis_client: Any) -> AsyncIterator[Api]:
    app = create_app(api_settings, api_settings.redis_url or "", roles=ROLES, sweeper=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            harness = Api(app, http, api_settings, database)
            harness.set_clock(Clock(START))
            yield harness
