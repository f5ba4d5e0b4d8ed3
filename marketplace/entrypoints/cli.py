"""`nvf`: the marketplace's command line.

A command's module is imported only when that command runs (`LazyGroup`): `nvf match` is one
offline clearing round and must not pay for the database, the bus and the workers. So this module
imports nothing of the app at its top; each command imports what it uses.

`LazyGroup` is also the one error boundary: what a user can fix (`marketplace.errors`: a bad
setting, an unreachable Redis or database, a bad date, a missing output folder) becomes one line
on stderr and its own exit code, never a traceback; and SIGTERM unwinds like Ctrl-C, so what a
command started (the embedded Redis) is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from marketplace.errors import EXIT_CODES, BadInput, check_output_file, user_error_for

if TYPE_CHECKING:
    from marketplace.settings import Settings

# Commands that live in their own module under `marketplace.entrypoints.commands`: name -> module.
# Each module's `register(app)` adds its commands; it is imported when one of them is asked for.
LAZY_COMMANDS: dict[str, str] = {
    "match": "match",
    "keys": "keys",
    "case": "lifecycle",
    "stats": "lifecycle",
    "dlq": "dlq",
    "access": "access",
    "agreements": "agreements",
    "waits": "waits",
    "capacity": "waits",
    "replay": "replay",
    "stream": "replay",
    "serve": "api",
    "clients": "api",
    "db": "db",
}


EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM
_log = logging.getLogger("nvf.cli")
# The Click that typer runs on (its own copy in recent versions): a command's own exit and Click's
# usage errors have said what they had to say.
_SAID = (typer.Exit, typer.Abort, sys.modules[typer.Exit.__module__].ClickException)


_terminated = False  # whether the interrupt being unwound came as SIGTERM (exit 143, not 130)
# After SIGTERM, how long the cancelled main task may take to unwind before the event loop is
# interrupted outright (a cancellation can be lost: the demo's settling loop sometimes loses one).
_GRACE_S = 3.0


def _interrupt_loop(loop: asyncio.AbstractEventLoop) -> None:
    # From a loop callback, not from inside some task's code: out of run_forever, then asyncio.run
    # cancels every task and waits for them (their `async with` and `finally` run). Should a task
    # not hear that either, the next one leaves that wait too: asyncio.run closes the loop and the
    # `with` blocks outside it (the embedded Redis) still run.
    loop.call_later(_GRACE_S, _interrupt_loop, loop)
    raise KeyboardInterrupt


def _sigterm_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    # SIGTERM's default ends the process on the spot: no `finally`, no `with` exit, so an embedded
    # Redis would outlive it. Handled as Ctrl-C is instead: inside `asyncio.run` its handler cancels
    # the main task (so every `async with` and `finally` runs), then raises KeyboardInterrupt; a
    # second Ctrl-C's worth follows after a grace period. Outside a loop Python's raises it at once.
    # A second SIGTERM ends the process on the spot (the embedded Redis then stops by its
    # parent-death signal). Ctrl-C itself is left to Python and asyncio (and uvicorn, which
    # re-raises it after its own graceful stop).
    global _terminated
    _terminated = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(RuntimeError):  # no loop running
        loop = asyncio.get_running_loop()
        loop.call_later(_GRACE_S, _interrupt_loop, loop)
    on_interrupt = signal.getsignal(signal.SIGINT)
    if callable(on_interrupt):
        on_interrupt(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # e.g. a test's CliRunner in a thread
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LazyGroup(TyperGroup):
    """The root group: the commands of `LAZY_COMMANDS` are loaded from their module on first use;
    and the error boundary (see the module's docstring)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        with _sigterm_unwinds():
            return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Ctrl-C is an answer, not a failure to explain: what was started has been stopped.
            raise typer.Exit(EXIT_SIGTERM if _terminated else EXIT_SIGINT) from None
        except _SAID:
            raise
        except Exception as exc:
            error = user_error_for(exc)
            if error is None:
                raise
            _log.debug("user error", exc_info=exc)  # the details, for whoever turns the level down
            typer.secho(f"nvf: {error.label}: {error}", err=True, fg="red")
            raise typer.Exit(error.exit_code) from None

    # `ctx` is Click's context, which typer vendors in some versions: typed loosely to fit both.
    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY_COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            self._load(LAZY_COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)

    def _load(self, module_name: str) -> None:
        module = importlib.import_module(f"marketplace.entrypoints.commands.{module_name}")
        holder = typer.Typer()
        module.register(holder)
        group = typer.main.get_group(holder)
        for name, command in group.commands.items():
            self.commands.setdefault(name, command)


app = typer.Typer(cls=LazyGroup, help="NVF Marketplace: national healthcare capacity brokering between regions.",
                  epilog="Exit codes: 0 done; " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items())
                  + f"; {EXIT_SIGINT} interrupted (Ctrl-C); {EXIT_SIGTERM} terminated (SIGTERM).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
# Off a terminal (CI logs, a pipe), Rich would fold tables to 80 columns; give them room.
console = Console(width=None if Console().is_terminal else 140)
err_console = Console(stderr=True)


def _settings() -> Settings:
    from marketplace.log_config import configure_logging
    from marketplace.settings import Settings

    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _load_scenario_or_exit(path: Path) -> Any:
    from matchers.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except (ScenarioError, OSError, ValueError) as exc:
        raise BadInput(f"scenario refused: {exc}") from exc


@app.command()
def config() -> None:
    """Print the effective settings."""
    from rich.table import Table

    from marketplace.settings import Settings

    settings = Settings()
    table = Table(show_header=False)
    for key, value in settings.describe().items():
        table.add_row(key, value)
    console.print(table)


@app.command()
def demo(
    scenario: Annotated[Path | None, typer.Option(help="scenario file (the contract's format); "
                                                       "default: the built-in spring 2026 campaign")] = None,
    out: Annotated[Path | None, typer.Option(help="write the proposed matches here (JSON Lines)")] = None,
    policy: Annotated[str, typer.Option(help="optimal or greedy")] = "optimal",
) -> None:
    """Run the whole marketplace in one process on the embedded defaults and clear one round."""
    from demo_regions.campaign import spring_cataract_campaign
    from marketplace.entrypoints.bootstrap import redis_server
    from marketplace.entrypoints.demo import render_summary, run_demo, write_jsonl_atomically

    settings = _settings()
    if out:
        check_output_file(out, "--out")  # before the run, not after it
    book = _load_scenario_or_exit(scenario) if scenario else spring_cataract_campaign()
    if policy not in ("optimal", "greedy"):
        err_console.print(f"[red]--policy must be optimal or greedy, not {policy!r}[/red]")
        raise typer.Exit(2)
    console.print(f"[bold]NVF Marketplace demo[/bold]: {book.name} — {len(book.offers)} offers, "
                  f"{len(book.requests)} requests, {book.patient_count} patients")
    with redis_server(settings) as redis_url:
        result = asyncio.run(run_demo(settings, redis_url, book, console=console, policy=policy))
    if out:
        write_jsonl_atomically(result.rows, out)
        console.print(f"allocation written to {out}")
    render_summary(console, book, result)


@app.command()
def run(
    role: Annotated[list[str] | None, typer.Option(help="worker role(s) to run; default all: "
                                                        "intake, matcher, notifier, timeline")] = None,
    sweeper: Annotated[bool, typer.Option(help="also host the deadline sweeper (one per deployment runs, "
                                               "by a Redis lock)")] = True,
    sweep_interval: Annotated[float, typer.Option(help="seconds between deadline sweeps")] = 5.0,
) -> None:
    """Start the workers against the configured Redis and database, until interrupted."""
    import structlog

    from events.parties import SCHEDULER
    from marketplace.adapters.redis_users import prepare_access
    from marketplace.entrypoints.bootstrap import redis_server
    from workers.app import ROLES, running
    from workers.runtime import Runtime
    from workers.sweeper import DeadlineSweeper

    settings = _settings()
    roles = tuple(role or ROLES)
    unknown = set(roles) - set(ROLES)
    if unknown:
        err_console.print(f"[red]unknown role(s) {sorted(unknown)}; choose from {list(ROLES)}[/red]")
        raise typer.Exit(2)
    log = structlog.get_logger("nvf.run")

    async def serve(redis_url: str) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # Each role (and the sweeper, as `scheduler`) connects as its own Redis user.
        credentials = await prepare_access(settings, redis_url)
        runtime = Runtime.create(settings, redis_url, credentials=credentials)
        async with running(runtime, roles):
            scheduler = runtime.for_party(SCHEDULER) if credentials is not None else runtime
            if scheduler is not runtime:
                await scheduler.connect()
            deadlines = DeadlineSweeper(scheduler, interval_s=sweep_interval) if sweeper else None
            if deadlines:
                deadlines.start()
            log.info("workers.started", roles=list(roles), consumer=settings.consumer_name, sweeper=sweeper,
                     access=settings.access)
            await stop.wait()
            if deadlines:
                await deadlines.stop()
            if scheduler is not runtime:
                await scheduler.broker.stop()
        await runtime.db.dispose()
        log.info("workers.stopped")

    with redis_server(settings) as redis_url:
        asyncio.run(serve(redis_url))


@app.command()
def publish(
    scenario: Annotated[Path, typer.Argument(help="scenario file whose offers and requests to publish")],
    clear: Annotated[bool, typer.Option(help="also request a clearing round per care area")] = True,
) -> None:
    """Publish a scenario's agreements, offers and requests as their regions would."""
    import redis.asyncio as aioredis

    from demo_regions.scenario import clearing_requests, new_run_id, region_events
    from events import Streams
    from events.streams import GROUP_INTAKE
    from marketplace.adapters.party_clients import PartyClients
    from marketplace.adapters.redis_users import AccessError, prepare_access
    from marketplace.entrypoints.bootstrap import redis_server
    from marketplace.entrypoints.progress import wait_until_consumed

    settings = _settings()
    book = _load_scenario_or_exit(scenario)
    run_id = new_run_id()
    envelopes = list(region_events(book, run_id=run_id))
    rounds = clearing_requests(book, run_id=run_id) if clear else []
    streams = Streams(settings.stream_prefix)

    async def send(redis_url: str) -> None:
        # Each region on its own ingress stream as its own user; the clearing requests as the operator,
        # once intake has taken in the regions' input (their streams are apart: nothing else orders them).
        async with PartyClients(redis_url, await prepare_access(settings, redis_url)) as parties:
            await parties.publish(streams, envelopes)
            if not rounds:
                return
            admin = aioredis.from_url(redis_url)
            try:
                pairs = [(streams.ingress(p), GROUP_INTAKE) for p in sorted({e.producer for e in envelopes})]
                if not await wait_until_consumed(admin, pairs, timeout_s=120):
                    err_console.print("[yellow]intake has not taken in everything yet (are the workers "
                                      "running?); the clearing requests go out anyway[/yellow]")
            finally:
                await admin.aclose()
            await parties.publish(streams, rounds)

    with redis_server(settings) as redis_url:
        try:
            asyncio.run(send(redis_url))
        except AccessError as exc:
            err_console.print(f"[red]access:[/red] {exc}")
            raise typer.Exit(2) from exc
    parties = sorted({e.producer for e in [*envelopes, *rounds]})
    console.print(f"published {len(envelopes) + len(rounds)} events (run {run_id}) as {len(parties)} parties, "
                  f"each on its own stream {streams.ingress('<party>')}")


@app.command()
def tail(
    type_: Annotated[list[str] | None, typer.Option("--type", help="event type(s), e.g. match.proposed")] = None,
    region: Annotated[str | None, typer.Option(help="only events of or for this region code")] = None,
    care_area: Annotated[str | None, typer.Option(help="only this care area")] = None,
    case: Annotated[str | None, typer.Option(help="only this case_ref")] = None,
    from_start: Annotated[bool, typer.Option(help="replay the streams from their beginning")] = False,
    count: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON envelope per line")] = False,
) -> None:
    """Follow the event streams live, filtered by event type, region, care area or case."""
    from marketplace.entrypoints.bootstrap import redis_server
    from marketplace.entrypoints.tail import EventFilter, follow

    settings = _settings()
    flt = EventFilter(types=set(type_ or ()), region=region, care_area=care_area, case_ref=case)
    with redis_server(settings) as redis_url, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(settings, redis_url, flt, console=console, from_start=from_start, count=count,
                           as_json=as_json))


@app.command()
def timeline(
    case_ref: Annotated[str, typer.Argument(help="the case's pseudonymous reference")],
    verify: Annotated[bool, typer.Option(help="check the hash chain; exit 1 if it is broken")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the entries as JSON lines")] = False,
) -> None:
    """Print one case's timeline (and check its hash chain with --verify)."""
    from marketplace.entrypoints.timeline_view import show_timeline

    settings = _settings()
    code = asyncio.run(show_timeline(settings, case_ref, console=console, check=verify, as_json=as_json))
    raise typer.Exit(code)


@app.command()
def asyncapi(
    out: Annotated[Path, typer.Option(help="where to write the document")] = Path("events/asyncapi.json"),
) -> None:
    """Write the AsyncAPI document of the whole app, generated by FastStream."""
    from marketplace.entrypoints.asyncapi import document

    check_output_file(out, "--out")
    out.write_text(document(), encoding="utf-8")
    console.print(f"AsyncAPI document written to {out}")


def main() -> None:
    try:
        app()
    except SystemExit as stopped:
        if stopped.code == EXIT_SIGINT or stopped.code == EXIT_SIGTERM:
            _leave_despite_stray_threads(stopped.code)
        raise


def _leave_despite_stray_threads(code: int) -> None:
    """Exit now, even if an interrupted cleanup left a library's thread behind (a database
    connection's worker that was never closed): Python would wait for it at exit, for ever. What the
    command started has been stopped by now (the `with` blocks ran on the way out)."""
    stray = [t for t in threading.enumerate()
             if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not stray:
        return
    _log.debug("leaving %d threads behind: %s", len(stray), [t.name for t in stray])
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
