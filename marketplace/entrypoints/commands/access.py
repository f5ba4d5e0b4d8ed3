"""`nvf access`: the parties' Redis users (one per region, the operator and each service role).

`init` makes the credentials (a random password per party, one 0600 file each under
`<state dir>/access/<prefix>/`), `show` prints who may touch what and the ACL rules, `apply`
puts the users on the configured Redis (with REDIS_URL's rights: an administrator), `revoke`
deletes them. `nvf run`, `nvf demo`, `nvf publish` and `nvf case do` apply them themselves unless
NVF_ACCESS says otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from events import Streams
from marketplace.access import acl_rules, grant, supports_selectors, user_name
from marketplace.adapters.redis_users import (
    AccessError,
    access_directory,
    apply,
    password_hash,
    provision,
    remove,
)
from marketplace.entrypoints.bootstrap import redis_server
from marketplace.parties import all_parties
from marketplace.settings import Settings

console = Console()
err_console = Console(stderr=True)


def _parties_or_exit(party: list[str] | None) -> list[str]:
    known = all_parties()
    wanted = list(party or known)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        err_console.print(f"[red]unknown party {unknown[0]!r}[/red]: a region code (01..25), operator, "
                          "intake, matcher, notifier, timeline or scheduler")
        raise typer.Exit(2)
    return wanted


async def _with_admin(url: str, work: Any) -> Any:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        return await work(client)
    finally:
        await client.aclose()


def register(app: typer.Typer) -> None:
    access = typer.Typer(help="The parties' Redis users: who may append to, read and consume which stream.",
                         no_args_is_help=True)
    app.add_typer(access, name="access")

    @access.command("init")
    def init(
        rotate: Annotated[list[str] | None, typer.Option(help="make a new password for this party")] = None,
    ) -> None:
        """Make the missing credentials (one random password per party, files readable by their owner only)."""
        settings = Settings()
        if rotate:
            _parties_or_exit(rotate)
        credentials = provision(settings.state_dir, settings.stream_prefix, all_parties(), rotate=rotate or ())
        where = access_directory(settings.state_dir, settings.stream_prefix)
        console.print(f"{len(credentials)} parties' credentials in {where} (hand each region its own file only)")
        if rotate:
            console.print(f"rotated: {', '.join(rotate)} — run `nvf access apply` to put the new passwords in force")

    @access.command("show")
    def show(
        party: Annotated[list[str] | None, typer.Option(help="only this party (repeatable)")] = None,
        redis_version: Annotated[str, typer.Option(help="the rules for this server version (7: key "
                                                        "permissions and selectors; 6.2: one key set per user)")] = "7",
        rules: Annotated[bool, typer.Option(help="print the ACL SETUSER commands")] = True,
    ) -> None:
        """Who may append to, read and consume which stream, and the ACL rules that say so."""
        settings = Settings()
        streams = Streams(settings.stream_prefix)
        wanted = _parties_or_exit(party)
        table = Table(title=f"Redis users under prefix {settings.stream_prefix!r}")
        for column in ("user", "appends to", "reads", "consumes", "other keys"):
            table.add_column(column, overflow="fold")
        for p in wanted:
            g = grant(streams, p)
            table.add_row(user_name(settings.stream_prefix, p), "\n".join(g.appends), "\n".join(g.reads),
                          "\n".join(g.consumes), "\n".join([*g.locks, *(f"{k} (trim by age)" for k in g.trims)]))
        console.print(table)
        if not rules:
            return
        selectors = supports_selectors(redis_version)
        directory = access_directory(settings.state_dir, settings.stream_prefix)
        for p in wanted:
            path = directory / f"{p}.json"
            secret = "#<sha256 of the password>"
            if path.exists():
                from marketplace.adapters.redis_users import load

                secret = f"#{password_hash(load(settings.state_dir, settings.stream_prefix, p).password)}"
            args = [user_name(settings.stream_prefix, p), "reset", "on", secret,
                    *acl_rules(grant(streams, p), selectors=selectors)]
            console.print("ACL SETUSER " + " ".join(f"'{a}'" if " " in a or "(" in a else a for a in args),
                          highlight=False, soft_wrap=True)

    @access.command("apply")
    def apply_(
        party: Annotated[list[str] | None, typer.Option(help="only this party (repeatable)")] = None,
    ) -> None:
        """Create or replace the users on the configured Redis (REDIS_URL must be an administrator)."""
        settings = Settings()
        wanted = _parties_or_exit(party)
        credentials = provision(settings.state_dir, settings.stream_prefix, wanted)
        streams = Streams(settings.stream_prefix)
        if settings.uses_embedded_redis:
            console.print("the embedded Redis lives only as long as the command that starts it: "
                          "`nvf run` and `nvf demo` apply the users to it each time")
        with redis_server(settings) as url:
            try:
                version = asyncio.run(_with_admin(url, lambda r: apply(r, streams, credentials)))
            except AccessError as exc:
                err_console.print(f"[red]access:[/red] {exc}")
                raise typer.Exit(1) from exc
        mode = ("read and write permissions apart, consumer commands in selectors" if supports_selectors(version)
                else "one key set per user for every command it has (Redis before 7.0)")
        console.print(f"applied {len(credentials)} users on Redis {version}: {mode}")

    @access.command("revoke")
    def revoke(
        party: Annotated[list[str] | None, typer.Option(help="only this party (repeatable)")] = None,
    ) -> None:
        """Delete the users of this prefix from the configured Redis (the credential files stay)."""
        settings = Settings()
        wanted = _parties_or_exit(party)
        with redis_server(settings) as url:
            removed = asyncio.run(_with_admin(url, lambda r: remove(r, settings.stream_prefix, wanted)))
        console.print(f"deleted {removed} users")

    @access.command("check")
    def check() -> None:
        """Compare the users on the configured Redis with the rules they should have."""
        settings = Settings()
        streams = Streams(settings.stream_prefix)

        async def work(r: Any) -> list[str]:
            problems = []
            for p in all_parties():
                name = user_name(settings.stream_prefix, p)
                info = await r.acl_getuser(name)
                if not info:
                    problems.append(f"{name}: missing")
                    continue
                # Its key patterns, in the root permissions and in the selectors (Redis 7).
                text = str(info.get("keys")) + str(info.get("selectors"))
                g = grant(streams, p)
                expected = [*g.appends, *g.reads, *g.consumes, *g.locks]
                missing = [k for k in expected if k not in text]
                if missing:
                    problems.append(f"{name}: keys differ (no {missing[0]})")
            return problems

        with redis_server(settings) as url:
            problems = asyncio.run(_with_admin(url, work))
        for line in problems:
            console.print(f"[red]{line}[/red]")
        if problems:
            raise typer.Exit(1)
        console.print(f"all {len(all_parties())} users present with their keys")
