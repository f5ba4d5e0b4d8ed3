"""The database's schema under Alembic: which revision it is at, bringing it to head, checking it.

The revisions live in `marketplace/adapters/migrations/versions` (shipped with the package), run
through `migrations/env.py` on a connection opened here, so nothing depends on the current
directory or an alembic.ini.

Processes that start together must not race on the DDL (issue 11: four roles on a fresh
PostgreSQL, two crashed creating the same tables). So an upgrade runs in one transaction that
first takes a transaction-level advisory lock on the database's schema: the first process
migrates, the others wait for its commit and then find the schema at head and do nothing. On
SQLite the transaction begins IMMEDIATE, taking the file's write lock, to the same effect.

At start (`ensure_schema`) a schema at head costs one read of the version table; a schema behind
is upgraded, or with NVF_DB_AUTO_MIGRATE=false refused with `SchemaNotCurrent`, whose message is
the one line to show (it names `nvf db upgrade`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from marketplace.adapters.checkpoint_key import load_key
from marketplace.adapters.sqlite_wal import BUSY_TIMEOUT_S, use_wal
from marketplace.errors import ConfigError


class Database(Protocol):
    """What migrating needs of `adapters.database.Database` (which calls into this module)."""

    engine: AsyncEngine
    url: URL
    schema: str | None
    state_dir: Path | None

    @property
    def is_sqlite(self) -> bool: ...


log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# The first revision: today's schema as `create_all` made it before there were migrations.
BASELINE = "0001"
_LOCK_MIGRATE = 7_315_003  # advisory lock class (beside search_index's keys); the object is the schema's hash
# SQLite's FTS5 index of the care-area vocabulary and its shadow tables are made and refilled on
# first search (adapters/search_index.py), from the shipped vocabulary: data, not a revision's.
_NOT_MIGRATED = ("care_area_terms_fts",)


class SchemaNotCurrent(ConfigError):
    """The database's schema is not the one this version of nvf runs on; the message says what to do
    (a user's error of the deployment: one line and the configuration exit code, like a bad setting)."""


@dataclass(frozen=True, slots=True)
class Upgraded:
    before: str | None  # the revision found (None: an empty database)
    after: str | None
    baseline: bool = False  # tables made before there were migrations, stamped as the first revision

    @property
    def applied(self) -> bool:
        return self.before != self.after


def include_object(_obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
    """What revisions manage (alembic's hook, for autogenerate and `check`)."""
    return not (type_ == "table" and name is not None and name.startswith(_NOT_MIGRATED))


def _config(connection: Connection | None = None, checkpoint_key: bytes | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    # For a revision that re-hashes timelines: their heads' keyed checkpoints are made anew with it.
    cfg.attributes["checkpoint_key"] = checkpoint_key
    return cfg


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    found = _script().get_current_head()
    assert found is not None, "the migrations have no revision"
    return found


def _known(revision: str) -> bool:
    try:
        return _script().get_revision(revision) is not None
    except CommandError:
        return False


def _context(conn: Connection) -> MigrationContext:
    # No version_table_schema: the connection's search_path is the database's own schema
    # (adapters/database.py), so the version table lands beside the tables, and autogenerate's
    # comparison, which looks in that default schema, knows it for the version table.
    return MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True})


def _current(conn: Connection) -> str | None:
    return _context(conn).get_current_revision()


async def current(db: Database) -> str | None:
    """The revision the database is at; None for an empty one (or one made before migrations)."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current)


def stamp_head(conn: Connection) -> None:
    """Record the head revision without running it (for tables `create_all` has just made)."""
    _context(conn).stamp(_script(), "head")


@contextlib.asynccontextmanager
async def _migrating(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection in the transaction that migrates, holding the lock that makes it the only one."""
    if not db.is_sqlite:
        async with db.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k, hashtext(:s))"),
                               {"k": _LOCK_MIGRATE, "s": db.schema or "public"})
            if db.schema:
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            yield conn
        return
    # pysqlite begins transactions itself, lazily and never before DDL; the driver's own handling
    # is turned off so that the transaction is ours and begins IMMEDIATE (SQLAlchemy's recipe).
    # Foreign keys stay off, as SQLite's table-copying ALTERs need.
    engine = create_async_engine(db.url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(engine.sync_engine, "connect", _sqlite_autocommit_driver)
    event.listen(engine.sync_engine, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


def _sqlite_autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    use_wal(dbapi_conn)  # as the app's connections have it


def _upgrade(conn: Connection, revision: str, checkpoint_key: bytes | None = None) -> Upgraded:
    before = _current(conn)
    if before is not None and not _known(before):
        raise SchemaNotCurrent(_unknown(before))
    cfg = _config(conn, checkpoint_key)
    baseline = before is None and inspect(conn).has_table("cases")
    if baseline:
        # Tables `create_all` made before there were migrations: today's first revision is what they hold.
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, revision)
    return Upgraded(before=BASELINE if baseline else before, after=_current(conn), baseline=baseline)


async def upgrade(db: Database, revision: str = "head") -> Upgraded:
    """Bring the schema to `revision`, exactly once however many processes ask at the same time."""
    key = load_key(db.state_dir) if db.state_dir is not None else None
    async with _migrating(db) as conn:
        done = await conn.run_sync(_upgrade, revision, key)
    if done.baseline:
        log.info("db.baseline_stamped", revision=BASELINE, schema=db.schema)
    if done.applied:
        # One line per migration actually run: the tests count them.
        log.info("db.migrated", from_revision=done.before, to_revision=done.after, schema=db.schema)
    return done


async def downgrade(db: Database, revision: str) -> str | None:
    """Take the schema back to `revision` (a DBA's step back before running an older version);
    returns the revision it is at afterwards."""
    key = load_key(db.state_dir) if db.state_dir is not None else None

    def run(conn: Connection) -> str | None:
        command.downgrade(_config(conn, key), revision)
        return _current(conn)

    async with _migrating(db) as conn:
        return await conn.run_sync(run)


async def ensure_schema(db: Database, *, auto_migrate: bool) -> None:
    """At a process's start: the schema at head, or upgraded to it, or `SchemaNotCurrent`."""
    found = await current(db)
    wanted = head()
    if found == wanted:
        return
    if found is not None and not _known(found):
        raise SchemaNotCurrent(_unknown(found))
    if not auto_migrate:
        where = "has no revision yet" if found is None else f"is at revision {found}"
        raise SchemaNotCurrent(f"the database schema {where}, behind this version's {wanted}: "
                               "run `nvf db upgrade` (automatic migration is off: NVF_DB_AUTO_MIGRATE)")
    await upgrade(db)


def _differences(conn: Connection) -> list[Any]:
    return list(compare_metadata(_context(conn), SQLModel.metadata))


async def differences(db: Database) -> list[Any]:
    """What the database's tables lack or have beyond the models (alembic's autogenerate diff); [] when equal."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(_differences)


def _unknown(revision: str) -> str:
    return (f"the database schema is at revision {revision}, which this version of nvf does not know "
            "(a newer version migrated it): run that version or a newer one")
