"""`nvf dlq list` and `nvf dlq replay`: what the workers gave up on, and sending it round again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from events import Streams
from marketplace.adapters.dead_letters import DeadLetter, ResendFailed, list_dead_letters, replay
from marketplace.entrypoints.bootstrap import redis_server
from marketplace.settings import Settings

console = Console()
T = TypeVar("T")


def _summary(letter: DeadLetter) -> str:
    try:
        data = json.loads(letter.body)
    except ValueError:
        return letter.body[:60].decode(errors="replace")
    if isinstance(data, dict):
        return f"{data.get('type', '?')} {data.get('event_id', '?')}"
    return type(data).__name__


async def _with_redis(redis_url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        return await work(client)
    finally:
        await client.aclose()


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(help="The dead-letter stream: entries whose handler kept failing.", no_args_is_help=True)
    app.add_typer(dlq, name="dlq")

    @dlq.command("list")
    def list_(
        as_json: Annotated[bool, typer.Option("--json", help="one JSON object per dead letter")] = False,
        count: Annotated[int | None, typer.Option(help="at most this many")] = None,
    ) -> None:
        """Show the dead letters: where each came from, how often it was delivered, and why it failed."""
        settings = Settings()
        stream = Streams(settings.stream_prefix).dead_letter
        with redis_server(settings) as url:
            letters = asyncio.run(_with_redis(url, lambda r: list_dead_letters(r, stream, count=count)))
        if as_json:
            for d in letters:
                console.print_json(json.dumps({
                    "id": d.id, "stream": d.stream, "group": d.group, "entry_id": d.entry_id, "reason": d.reason,
                    "deliveries": d.deliveries, "consumer": d.consumer, "failed_at": d.failed_at,
                    "body": d.body.decode(errors="replace")}))
            return
        table = Table(title=f"{stream}: {len(letters)} dead letter(s)")
        for column in ("id", "from", "event", "deliveries", "failed at", "reason"):
            table.add_column(column)
        for d in letters:
            table.add_row(d.id, f"{d.stream} ({d.group})", _summary(d), str(d.deliveries), d.failed_at, d.reason)
        console.print(table)

    @dlq.command("replay")
    def replay_(
        ids: Annotated[list[str] | None, typer.Argument(help="dead-letter ids to replay (see `nvf dlq list`)")] = None,
        all_: Annotated[bool, typer.Option("--all", help="replay every dead letter")] = False,
    ) -> None:
        """Put dead letters back on their streams; the event id inside keeps a replay from acting twice."""
        if not ids and not all_:
            console.print("[red]name the dead letters to replay, or pass --all[/red]")
            raise typer.Exit(2)
        settings = Settings()
        stream = Streams(settings.stream_prefix).dead_letter
        with redis_server(settings) as url:
            try:
                done = asyncio.run(_with_redis(url, lambda r: replay(r, stream, None if all_ else list(ids or []))))
            except ResendFailed as failed:
                for d in failed.resent:
                    console.print(f"replayed {d.id} -> {d.stream}")
                console.print(f"[red]{failed}; it is still a dead letter[/red]")
                raise typer.Exit(1) from None
        missing = set(ids or []) - {d.id for d in done}
        for d in done:
            console.print(f"replayed {d.id} -> {d.stream}")
        if missing:
            console.print(f"[red]no such dead letter(s): {', '.join(sorted(missing))}[/red]")
            raise typer.Exit(1)
