"""`nvf serve` (the region API with the workers) and `nvf clients create|list|revoke` (its clients)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.api_orm import ApiClientRow
from marketplace.adapters.database import Database
from marketplace.entrypoints.commands.db import ready
from marketplace.settings import Settings

T = TypeVar("T")
# Off a terminal (a pipe, CI logs) Rich would fold the table to 80 columns and cut the client ids.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)
clients_app = typer.Typer(help="The region API's clients (OAuth2 client credentials): create, list, revoke.",
                          no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on; default NVF_API_HOST (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port; default NVF_API_PORT (8000)")] = None,
    role: Annotated[list[str] | None, typer.Option(help="worker role(s) to host beside the API; default all")] = None,
    workers: Annotated[bool, typer.Option(help="host the workers (--no-workers: the API alone, with workers "
                                               "run elsewhere by `nvf run`)")] = True,
    sweeper: Annotated[bool, typer.Option(help="also host the deadline sweeper (one per deployment runs)")] = True,
) -> None:
    """Serve the region API (/v1, OpenAPI at /docs, AsyncAPI at /asyncapi) with the workers, until interrupted."""
    import uvicorn

    from marketplace.entrypoints.bootstrap import redis_server
    from marketplace.entrypoints.server import create_app
    from marketplace.log_config import configure_logging
    from workers.app import ROLES

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    roles = tuple(role or ROLES) if workers else ()
    unknown = set(roles) - set(ROLES)
    if unknown:
        err_console.print(f"[red]unknown role(s) {sorted(unknown)}; choose from {list(ROLES)}[/red]")
        raise typer.Exit(2)
    # The schema first, before the app's lifespan, where a refusal would be uvicorn's traceback.
    asyncio.run(_schema_ready(settings))
    with redis_server(settings) as redis_url:
        try:
            app = create_app(settings, redis_url, roles=roles, sweeper=sweeper and bool(roles))
        except ValueError as exc:
            err_console.print(f"[red]settings:[/red] {exc}")
            raise typer.Exit(2) from exc
        config = uvicorn.Config(app, host=host or settings.api_host, port=port or settings.api_port,
                                log_config=None, access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        # uvicorn stops gracefully on SIGINT/SIGTERM and then raises the signal again for the
        # previous handler: an interrupt after a clean stop is a normal end, not an error.
        signal.signal(signal.SIGTERM, lambda *_: None)
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            err_console.print("[red]the API did not start[/red] (see the log above: the port may be taken, or "
                              "Redis or the database unreachable)")
            raise typer.Exit(1)


async def _schema_ready(settings: Settings) -> None:
    db = Database.of(settings)
    try:
        await ready(db, settings)
    finally:
        await db.dispose()


async def _with_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    db = Database.of(settings)
    try:
        await ready(db, settings)
        async with db.session() as session:
            return await work(session)
    finally:
        await db.dispose()


@clients_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="what the client is, e.g. 'Region Stockholm care navigation'")],
    region: Annotated[str | None, typer.Option(help="the region (two-digit code) the client acts for")] = None,
    operator: Annotated[bool, typer.Option(help="a client of the national coordination function")] = False,
    hsa_id: Annotated[str | None, typer.Option(help="the organisation's HSA-id, put in its tokens")] = None,
) -> None:
    """Create a client; its secret is printed once (only a hash is kept)."""
    from marketplace.services import api_clients

    if operator == (region is not None):
        err_console.print("[red]give either --region CODE or --operator[/red]")
        raise typer.Exit(2)
    settings = Settings()

    async def work(session: AsyncSession) -> tuple[ApiClientRow, str]:
        return await api_clients.create(session, name=name, role="operator" if operator else "region",
                                        region=region, hsa_id=hsa_id)

    try:
        row, secret = asyncio.run(_with_db(settings, work))
    except ValueError as exc:
        err_console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"client_id     {row.client_id}")
    console.print(f"client_secret {secret}")
    console.print(f"role {row.role}" + (f", region {row.region} ({row.org_number})" if row.region else ""))
    console.print("[yellow]the secret is shown only now; keep it in the client's secret store[/yellow]")


@clients_app.command("list")
def list_() -> None:
    """The clients, their organisation and whether they are revoked (never their secrets)."""
    from marketplace.services import api_clients

    rows = asyncio.run(_with_db(Settings(), api_clients.listing))
    table = Table("client_id", "name", "role", "region", "org_number", "hsa_id", "created", "revoked")
    table.columns[0].no_wrap = True
    for r in rows:
        table.add_row(r.client_id, r.name, r.role, r.region or "", r.org_number or "", r.hsa_id or "",
                      r.created_at.strftime("%Y-%m-%d %H:%M"),
                      r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "")
    console.print(table)


@clients_app.command("revoke")
def revoke(client_id: Annotated[str, typer.Argument(help="the client to revoke")]) -> None:
    """Revoke a client: it gets no new tokens, and the tokens it holds stop working at once."""
    from marketplace.services import api_clients

    async def work(session: AsyncSession) -> bool:
        return await api_clients.revoke(session, client_id)

    if not asyncio.run(_with_db(Settings(), work)):
        err_console.print(f"[red]no client {client_id!r}[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {client_id}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(clients_app, name="clients")
