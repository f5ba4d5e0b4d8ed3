"""`nvf replay STREAM --policy ...` (the policy sandbox) and `nvf stream generate|record`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from marketplace.errors import check_output_file
from marketplace.replay.policies import ONLINE, POLICIES
from marketplace.replay.stream import StreamError

err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]{message}[/red]")
    return typer.Exit(2)


def register(app: typer.Typer, console: Console | None = None) -> None:
    # Off a terminal (CI logs, a pipe), Rich would fold tables to 80 columns; give them room.
    console = console or Console(width=None if Console().is_terminal else 140)

    @app.command()
    def replay(
        stream_file: Annotated[str, typer.Argument(
            metavar="STREAM", help="a stream file (nvf-replay-stream JSON), or a shipped sample: "
                                   "cataract, inguinal-hernia, knee-replacement")],
        policy: Annotated[list[str] | None, typer.Option(
            help=f"clearing policy, repeatable: {', '.join(POLICIES)} (default: {', '.join(ONLINE)})")] = None,
        publish_before_breach: Annotated[int | None, typer.Option(
            min=0, max=180, help="also replay each policy with requests published N days before the breach")] = None,
        breach_weight: Annotated[int, typer.Option(
            min=0, max=1000, help="with --publish-before-breach: weight of days to breach in the objective")] = 0,
        json_out: Annotated[Path | None, typer.Option("--json", help="write the report here (JSON)")] = None,
        charts: Annotated[Path | None, typer.Option(help="write charts over time here (PNG)")] = None,
    ) -> None:
        """Replay a market over time under clearing policies, against the hindsight optimum."""
        from marketplace.replay.report import render, write_charts, write_json
        from marketplace.replay.sandbox import open_stream, run_sandbox

        for path, option in ((json_out, "--json"), (charts, "--charts")):
            if path is not None:
                check_output_file(path, option)
        chosen = list(policy or ONLINE)
        unknown = [p for p in chosen if p not in POLICIES]
        if unknown:
            raise _fail(f"--policy {unknown[0]!r} is not a policy; choose from {', '.join(POLICIES)}")
        try:
            stream = open_stream(stream_file)
        except StreamError as exc:
            raise _fail(f"stream refused: {exc}") from exc
        started = time.perf_counter()
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=err_console, transient=True)

        def on_start(label: str, total: int) -> Callable[[int, int], None]:
            task = progress.add_task(f"replaying {label}", total=total)
            return lambda done, _total: progress.update(task, completed=done)

        with progress:
            run = run_sandbox(stream, chosen, publish_before_breach=publish_before_breach,
                              breach_weight=breach_weight, on_start=on_start)
        render(run.report, console)
        if json_out:
            write_json(run.report, json_out)
            console.print(f"report written to {json_out}")
        if charts:
            write_charts(run.report, run.results, charts)
            console.print(f"charts written to {charts}")
        err_console.print(f"{len(run.results)} replays of {len(stream.events)} events in "
                          f"{time.perf_counter() - started:.1f} s")

    stream_app = typer.Typer(help="Streaming scenarios for `nvf replay`: generate one, or record a marketplace's log.",
                             no_args_is_help=True)
    app.add_typer(stream_app, name="stream")

    @stream_app.command("generate")
    def generate(
        scenario: Annotated[Path, typer.Argument(help="a static scenario (the contract's format)")],
        out: Annotated[Path, typer.Option(help="where to write the stream")],
        weeks: Annotated[int, typer.Option(min=1, max=40, help="weeks over which things arrive")] = 12,
        seed: Annotated[int, typer.Option(min=0, help="the generator's seed")] = 1,
        care_area: Annotated[str | None, typer.Option(help="only this care area")] = None,
        scale: Annotated[float, typer.Option(min=0.001, max=1.0, help="share of patients and capacity kept")] = 1.0,
        capacity_factor: Annotated[float, typer.Option(min=0.01, max=10.0, help="multiply every offer's capacity")
                                   ] = 1.0,
        backlog: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of patients already past the "
                                                                      "guarantee at the start")] = 0.2,
    ) -> None:
        """Turn a static scenario into a stream of timed arrivals over WEEKS weeks (seeded)."""
        from marketplace.replay.generate import GeneratorOptions, generate_stream
        from marketplace.replay.stream import write_stream
        from matchers.scenario import ScenarioError, load_scenario

        check_output_file(out, "--out")
        try:
            book = load_scenario(scenario)
        except (ScenarioError, OSError) as exc:
            raise _fail(f"scenario refused: {exc}") from exc
        stream = generate_stream(book, GeneratorOptions(weeks=weeks, seed=seed, care_area=care_area, scale=scale,
                                                        capacity_factor=capacity_factor, backlog=backlog))
        if not stream.events:
            raise _fail(f"the scenario has nothing of care area {care_area!r}")
        write_stream(stream, out)
        console.print(f"{len(stream.events)} events, {stream.patient_count} patients, "
                      f"{sum(o.capacity for o in stream.offers)} slots, {stream.start} .. {stream.end} -> {out}")

    @stream_app.command("record")
    def record(
        out: Annotated[Path, typer.Option(help="where to write the stream")],
    ) -> None:
        """Read the configured marketplace's log (what `nvf demo` leaves) as a stream to replay."""
        from marketplace.adapters.database import Database
        from marketplace.replay.recorded import NothingRecorded, record_from_database
        from marketplace.replay.stream import write_stream
        from marketplace.settings import Settings

        check_output_file(out, "--out")
        settings = Settings()

        async def read() -> object:
            db = Database.of(settings)
            try:
                return await record_from_database(db)
            finally:
                await db.dispose()

        try:
            stream = asyncio.run(read())
        except NothingRecorded as exc:
            raise _fail(str(exc)) from exc
        write_stream(stream, out)  # type: ignore[arg-type]
        console.print(f"recorded {len(stream.events)} events ({stream.patient_count} patients) -> {out}")  # type: ignore[attr-defined]
