"""Benchmark of the policy sandbox: `python -m benchmarks.replay [DIR] [--scenario large] [--weeks 12]`.

Turns a scenario (default large.json: 50 000 patients, 600 offers) into a stream over the weeks,
replays it under the chosen policies with progress shown, and prints a table: events, rounds,
patients the rounds read, seconds; and, on a smaller scenario (default medium.json), the
continuous policy with incremental rounds against the same replay re-solving the whole book
every round (same outcome, the work it saves). `--sizes 0.25,0.5,1` first replays the scenario
continuously at those shares of its patients and capacity (the generator's `scale`) and prints
seconds per size: how the replay grows with the market. Scenarios come from DIR, else
$NVF_SCENARIOS, else ../shared/scenarios beside the repo.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from marketplace.lifecycle import DEFAULT_POLICY
from marketplace.replay.engine import Replay, ReplayResult
from marketplace.replay.generate import GeneratorOptions, generate_stream
from marketplace.replay.metrics import hindsight_knows_answers, hindsight_metrics, replay_metrics
from marketplace.replay.policies import POLICIES
from marketplace.replay.stream import Stream
from matchers.scenario import load_scenario


def _default_dir() -> Path:
    env = os.environ.get("NVF_SCENARIOS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "scenarios"


def _replay(stream: Stream, policy: str, progress: Progress, label: str, *, full: bool = False
            ) -> tuple[ReplayResult, float, float]:
    task = progress.add_task(label, total=len(stream.events))
    started, cpu = time.perf_counter(), time.process_time()
    step = max(1, len(stream.events) // 10)
    plain = not progress.console.is_terminal  # a log file gets a line every tenth instead of a bar

    def tick(done: int, total: int) -> None:
        progress.update(task, completed=done)
        if plain and (done // step != (done - 500) // step or done == total):
            print(f"{label}: {done}/{total} events, {time.perf_counter() - started:.0f} s, "
                  f"{time.process_time() - cpu:.0f} s of CPU", flush=True)

    result = Replay(stream, POLICIES[policy], full_resolve=full).run(tick)
    return result, time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=None, help="folder of scenario files")
    parser.add_argument("--scenario", default="large", help="the scenario to stream (default large)")
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default="continuous,weekly", help="comma-separated policies")
    parser.add_argument("--sizes", default="0.25,0.5,1",
                        help="shares of the scenario to replay continuously for seconds per size ('' to skip)")
    parser.add_argument("--compare", default="medium",
                        help="scenario for incremental vs full re-solve ('' to skip)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    directory: Path = args.directory or _default_dir()
    names = [args.scenario] + ([args.compare] if args.compare else [])
    missing = [n for n in names if not (directory / f"{n}.json").is_file()]
    if missing:
        console.print(f"[red]no scenario {', '.join(missing)} in {directory}[/red]")
        return 2

    table = Table(title=f"replays over {args.weeks} weeks, seed {args.seed} ({os.cpu_count()} cores)")
    for column in ("stream", "policy", "rounds", "events", "patients", "placed", "of hindsight",
                   "patients read by rounds", "read per round", "seconds", "cpu s", "cpu ratio"):
        table.add_column(column, justify="left" if column in ("stream", "policy") else "right")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console)
    sizes = Table(title=f"continuous replay of {args.scenario} by size, {args.weeks} weeks, seed {args.seed}")
    for column in ("share", "patients", "slots", "events", "rounds", "patients read by rounds", "placed",
                   "seconds", "cpu s", "cpu s per 1 000 patients"):
        sizes.add_column(column, justify="right")
    with progress:
        scenario = load_scenario(directory / f"{args.scenario}.json")
        for share in [float(x) for x in args.sizes.split(",") if x]:
            sized = generate_stream(scenario, GeneratorOptions(weeks=args.weeks, seed=args.seed, scale=share))
            result, seconds, cpu = _replay(sized, "continuous", progress, f"{args.scenario} x {share:g} / continuous")
            m = replay_metrics(result)
            sizes.add_row(f"{share:g}", str(sized.patient_count), str(sum(o.capacity for o in sized.offers)),
                          str(len(sized.events)), str(result.rounds), str(result.round_patients), str(m.placed),
                          f"{seconds:.1f}", f"{cpu:.1f}", f"{1000 * cpu / max(1, sized.patient_count):.2f}")
        if args.sizes:
            console.print(sizes)
        started = time.perf_counter()
        stream = generate_stream(scenario, GeneratorOptions(weeks=args.weeks, seed=args.seed))
        console.print(f"{args.scenario}: {len(stream.events)} events, {stream.patient_count} patients, "
                      f"{sum(o.capacity for o in stream.offers)} slots, generated in "
                      f"{time.perf_counter() - started:.1f} s")
        started, cpu = time.perf_counter(), time.process_time()
        hindsight = hindsight_metrics(stream, DEFAULT_POLICY)
        knows = "knowing" if hindsight_knows_answers(stream) else "not knowing"
        console.print(f"hindsight optimum ({knows} the answers): {hindsight.placed} placed, "
                      f"in {time.perf_counter() - started:.1f} s ({time.process_time() - cpu:.1f} s of CPU)")
        first: float | None = None
        for policy in [p for p in args.policies.split(",") if p]:
            result, seconds, cpu = _replay(stream, policy, progress, f"{args.scenario} / {policy}")
            m = replay_metrics(result)
            first = first or cpu
            table.add_row(args.scenario, policy, str(result.rounds), str(len(stream.events)), str(m.patients),
                          str(m.placed), f"{m.placed / max(1, hindsight.placed):.3f}", str(result.round_patients),
                          f"{result.round_patients / max(1, result.rounds):.0f}", f"{seconds:.1f}",
                          f"{cpu:.1f}", f"{cpu / first:.2f}")
            console.print(f"{args.scenario} / {policy}: {seconds:.0f} s ({cpu:.0f} s of CPU)")
        if args.compare:
            small = generate_stream(load_scenario(directory / f"{args.compare}.json"),
                                    GeneratorOptions(weeks=args.weeks, seed=args.seed))
            h = hindsight_metrics(small, DEFAULT_POLICY)
            runs = [(label, *_replay(small, "continuous", progress, f"{args.compare} / {label}", full=full))
                    for label, full in (("continuous, incremental", False), ("continuous, full re-solve", True))]
            base = runs[1][3]
            for label, result, seconds, cpu in runs:
                m = replay_metrics(result)
                table.add_row(args.compare, label, str(result.rounds), str(len(small.events)), str(m.patients),
                              str(m.placed), f"{m.placed / max(1, h.placed):.3f}", str(result.round_patients),
                              f"{result.round_patients / max(1, result.rounds):.0f}", f"{seconds:.1f}",
                              f"{cpu:.1f}", f"{cpu / base:.2f}")
            inc, full = replay_metrics(runs[0][1]), replay_metrics(runs[1][1])
            # Each round has the same optimum either way (tests/matchers/test_incremental.py); ties
            # among equal optima may fall differently, and then later answers differ.
            console.print(f"placed: incremental {inc.placed}, full re-solve {full.placed}; "
                          f"wait-days {inc.wait_days} and {full.wait_days}")
    if args.sizes:
        console.print(sizes)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
