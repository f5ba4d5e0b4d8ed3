"""`nvf db upgrade|current|check`: the database schema's migrations (Alembic, marketplace/adapters/schema.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from marketplace.adapters import schema
from marketplace.adapters.database import Database
from marketplace.log_config import configure_logging
from marketplace.settings import Settings

T = TypeVar("T")
console = Console()
err_console = Console(stderr=True)
db_app = typer.Typer(help="The database schema: bring it to this version's (`upgrade`), show it, check it.",
                     no_args_is_help=True)


async def ready(db: Database, settings: Settings) -> None:
    """At a command's start: the schema at head, upgraded when NVF_DB_AUTO_MIGRATE allows; else
    `schema.SchemaNotCurrent`, which the CLI shows as one line naming `nvf db upgrade`."""
    await db.ensure_schema(auto_migrate=settings.db_auto_migrate)


def _run(work: Callable[[Database], Awaitable[T]]) -> T:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    db = Database.of(settings)

    async def go() -> T:
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except OSError as exc:  # the server is not there (asyncpg raises the socket's error)
        err_console.print(f"[red]database unreachable:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc


@db_app.command("upgrade")
def upgrade() -> None:
    """Bring the schema to this version's (run once before the workers; safe to run again or at the same time)."""
    done = _run(schema.upgrade)
    if done.applied:
        console.print(f"schema upgraded from {done.before or 'empty'} to {done.after}")
    else:
        console.print(f"schema already at {done.after} (head)")


@db_app.command("current")
def current() -> None:
    """The revision the schema is at, and this version's head."""
    found = _run(schema.current)
    wanted = schema.head()
    state = "at head" if found == wanted else f"behind: run `nvf db upgrade` for {wanted}"
    console.print(f"{found or 'no revision'} ({state})")


@db_app.command("check")
def check() -> None:
    """Exit 0 when the schema is at head and matches the models; otherwise say what differs, exit 1."""

    async def both(db: Database) -> tuple[str | None, list[object]]:
        return await schema.current(db), await schema.differences(db)

    found, diffs = _run(both)
    wanted = schema.head()
    if found != wanted:
        err_console.print(f"schema at {found or 'no revision'}, not at head {wanted}: run `nvf db upgrade`")
        raise typer.Exit(1)
    if diffs:
        err_console.print(f"schema at head {wanted} but it differs from the models in {len(diffs)} way(s):")
        for diff in diffs:
            err_console.print(f"  {escape(repr(diff))}")
        raise typer.Exit(1)
    console.print(f"schema at head {wanted} and matching the models")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
