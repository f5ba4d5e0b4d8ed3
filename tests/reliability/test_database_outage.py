"""A lost database connection: the workers reconnect and nothing is lost (PostgreSQL only)."""

from __future__ import annotations

import os

import pytest
from sqlmodel import select

from marketplace.adapters.orm import OfferRow
from tests.factories import market_events
from tests.integration.harness import marketplace, publish_events
from tests.reliability.checks import eventually

pytestmark = pytest.mark.integration


async def _terminate_our_connections() -> int:
    """Kill this process's own PostgreSQL sessions (and nobody else's) from the server side."""
    import asyncpg
    import psutil

    ports = [c.laddr.port for c in psutil.Process().net_connections(kind="tcp")
             if c.raddr and c.raddr.port == 5432]
    url = os.environ["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE client_port = ANY($1::int[]) AND pid <> pg_backend_pid()", ports)
        return len(rows)
    finally:
        await conn.close()


async def test_workers_survive_losing_their_database_connections(settings, database, redis_client,
                                                                 database_kind):
    if database_kind != "postgresql":
        pytest.skip("SQLite is a file in this process: there is no server connection to lose")
    settings = settings.model_copy(update={"claim_idle_ms": 500, "claim_interval_ms": 100})
    events = list(market_events("dbloss", 8, requests_per_offer=0))

    async def stored(n: int) -> bool:
        async with database.session() as session:
            return len((await session.exec(select(OfferRow.offer_id))).all()) >= n

    async with marketplace(settings, database, roles=("intake",)) as runtime:
        await publish_events(runtime.redis, runtime.streams, events[:4])
        await eventually(lambda: stored(4), 15, "the first offers")
        assert await _terminate_our_connections() >= 1
        await publish_events(runtime.redis, runtime.streams, events[4:])
        await eventually(lambda: stored(8), 30, "the offers published after the connections were lost")
    async with database.session() as session:
        assert len((await session.exec(select(OfferRow))).all()) == 8
