"""Alembic's environment: the models' metadata, on the connection `marketplace.adapters.schema` hands in.

`nvf db upgrade` (and every start) runs the revisions on a connection it has opened, locked and
begun a transaction on, passed as `config.attributes["connection"]`. A developer's `alembic`
command (the repository's alembic.ini: `alembic revision --autogenerate -m ...`) has none: this
module then connects to the configured database (the same settings as `nvf`) itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from marketplace.adapters import schema
from marketplace.adapters.database import Database  # registers every table on SQLModel.metadata

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        # SQLite alters a table by copying it: alembic's batch mode writes the revisions that way.
        render_as_batch=connection.dialect.name == "sqlite",
        # The version table goes where the tables go: the connection's search_path is the
        # database's own schema on PostgreSQL (see adapters/schema.py).
        include_object=schema.include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    """`alembic upgrade head --sql`: the DDL as a script, for a DBA to read or run (with the
    search_path set to the database's schema, as nvf's connections have it)."""
    from marketplace.settings import Settings

    settings = Settings()
    context.configure(url=settings.effective_database_url, target_metadata=SQLModel.metadata,
                      literal_binds=True, include_object=schema.include_object)
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    from marketplace.settings import Settings

    settings = Settings()
    db = Database.of(settings)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await db.dispose()


def _main() -> None:
    connection: Any = config.attributes.get("connection")
    if context.is_offline_mode():
        run_offline()
    elif connection is not None:
        run_on(connection)
    else:
        asyncio.run(_run_standalone())


_main()
