"""Engine and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL through asyncpg."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters import (
    api_orm,  # noqa: F401  (the region API's clients, idempotency keys and audit trail)
    appends,  # noqa: F401  (its session hooks write the bulk-appended rows)
    message_orm,  # noqa: F401  (the secure messages' tables)
    orm,  # noqa: F401  (registers the tables)
    waits_orm,  # noqa: F401  (waiting times and the free-capacity feed)
)
from marketplace.adapters.sqlite_wal import BUSY_TIMEOUT_S, use_wal
from marketplace.settings import Settings

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Database:
    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = make_url(url)
        self.schema = schema
        # Where the marketplace's checkpoint key lives: a migration that re-hashes timelines
        # re-checkpoints their heads with it (`Database.of` sets it).
        self.state_dir: Path | None = None
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ValueError(f"db_schema: {schema!r} is not a plain lower-case identifier")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
        elif schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        if not self.is_sqlite:
            kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @classmethod
    def of(cls, settings: Settings) -> Database:
        """The database the settings name (SQLite in the state folder unless DATABASE_URL is set)."""
        db = cls(settings.effective_database_url, schema=settings.db_schema)
        db.state_dir = settings.state_dir
        return db

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    async def ensure_schema(self, *, auto_migrate: bool = True) -> None:
        """At a process's start: the schema at the migrations' head, or upgraded to it (under a lock,
        once however many processes start together), or refused with `schema.SchemaNotCurrent`
        when `auto_migrate` is off."""
        from marketplace.adapters import schema  # alembic: only for processes that use the database

        await schema.ensure_schema(self, auto_migrate=auto_migrate)

    async def upgrade(self) -> None:
        """The schema to the migrations' head (`nvf db upgrade`), once however many processes ask."""
        from marketplace.adapters import schema

        await schema.upgrade(self)

    async def create_all(self) -> None:
        """Today's tables in one go, recorded as the migrations' head: for tests and benchmarks, where
        it is quicker than running the revisions (tests/migrations proves both make the same schema).
        Processes start with `ensure_schema`."""
        from marketplace.adapters import schema

        async with self.engine.begin() as conn:
            if self.schema and not self.is_sqlite:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            await conn.run_sync(SQLModel.metadata.create_all)
            await conn.run_sync(schema.stamp_head)

    async def drop_schema(self) -> None:
        """Drop this database's own schema (PostgreSQL) or its tables (SQLite); for tests."""
        async with self.engine.begin() as conn:
            if self.schema and not self.is_sqlite:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            else:
                await conn.run_sync(SQLModel.metadata.drop_all)
                # The migrations' record goes with the tables, or the next start would find them at head.
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # One writer at a time: WAL lets readers go on, the busy timeout makes writers wait their turn.
    use_wal(dbapi_conn)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
