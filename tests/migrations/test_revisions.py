"""The migrations make exactly the models' schema, `nvf db upgrade` is idempotent, and the shortcuts
(`create_all` for tests, a pre-migrations database's tables) are recorded at the right revision."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from marketplace.adapters import schema
from marketplace.adapters.database import Database
from marketplace.settings import Settings
from tests.integration.test_cli import run_nvf
from tests.reliability.conftest import worker_env


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_the_revisions_make_exactly_the_models_schema(empty_db: Database) -> None:
    assert await schema.current(empty_db) is None
    done = await schema.upgrade(empty_db)
    assert (done.before, done.after, done.applied) == (None, schema.head(), True)
    # Alembic's autogenerate comparison: tables, columns, types, nullability, indexes, unique keys.
    assert await schema.differences(empty_db) == []
    assert await _tables(empty_db) == {*SQLModel.metadata.tables, "alembic_version"}


async def test_upgrading_a_schema_at_head_changes_nothing(empty_db: Database) -> None:
    await schema.upgrade(empty_db)
    again = await schema.upgrade(empty_db)
    assert (again.before, again.after, again.applied) == (schema.head(), schema.head(), False)


async def test_create_all_is_recorded_at_head_so_a_start_after_it_does_nothing(empty_db: Database) -> None:
    await empty_db.create_all()
    assert await schema.current(empty_db) == schema.head()
    await empty_db.ensure_schema(auto_migrate=False)  # would refuse if it were behind
    assert await schema.differences(empty_db) == []


async def test_tables_made_before_migrations_are_taken_as_the_first_revision(empty_db: Database) -> None:
    # What `create_all` at start left before there were migrations: the first revision's tables
    # (today's models have moved on since), no version table.
    await schema.upgrade(empty_db, schema.BASELINE)
    async with empty_db.engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    done = await schema.upgrade(empty_db)
    assert done.baseline and done.after == schema.head()
    assert await schema.differences(empty_db) == []


async def test_dropping_the_schema_forgets_its_revision(empty_db: Database) -> None:
    """The demo's reset: after the drop the next start creates the tables again."""
    await schema.upgrade(empty_db)
    await empty_db.drop_schema()
    assert await schema.current(empty_db) is None
    await empty_db.ensure_schema(auto_migrate=True)
    assert await schema.differences(empty_db) == []


async def test_a_schema_from_a_newer_version_is_refused_even_with_auto_migration(empty_db: Database) -> None:
    await schema.upgrade(empty_db)
    async with empty_db.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(schema.SchemaNotCurrent, match=r"f00d.*does not know"):
        await empty_db.ensure_schema(auto_migrate=True)


def test_nvf_db_upgrade_twice_is_a_no_op(settings: Settings, tmp_path: Path, empty_db: Database) -> None:
    env = worker_env(settings)
    assert run_nvf(["db", "check"], env).returncode == 1  # empty: not at head

    first = run_nvf(["db", "upgrade"], env)
    assert first.returncode == 0, first.stderr
    assert f"schema upgraded from empty to {schema.head()}" in first.stdout
    second = run_nvf(["db", "upgrade"], env)
    assert second.returncode == 0, second.stderr
    assert f"schema already at {schema.head()} (head)" in second.stdout
    # The second run applied nothing: no migration logged.
    assert "db.migrated" in first.stdout + first.stderr
    assert "db.migrated" not in second.stdout + second.stderr

    check = run_nvf(["db", "check"], env)
    assert check.returncode == 0, check.stderr
    assert "matching the models" in check.stdout
    current = run_nvf(["db", "current"], env)
    assert current.stdout.strip() == f"{schema.head()} (at head)"


async def test_upgrades_at_the_same_moment_migrate_once(settings: Settings, empty_db: Database) -> None:
    """Eight connections asking at once (the processes' race, without their start-up times to spread them)."""
    others = [Database.of(settings) for _ in range(8)]
    try:
        results = await asyncio.gather(*(schema.upgrade(db) for db in others))
    finally:
        await asyncio.gather(*(db.dispose() for db in others))
    assert sum(r.applied for r in results) == 1
    assert {r.after for r in results} == {schema.head()}
    assert await schema.differences(empty_db) == []
