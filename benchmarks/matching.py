"""Benchmark of one clearing round per scenario and policy: `python -m benchmarks.matching [DIR]`.

Each run happens in a fresh Python process so that its peak memory (ru_maxrss) is its own;
`seconds` is load + solve + write measured inside that process, `wall` adds interpreter start-up
and imports. Scenarios come from DIR, else $NVF_SCENARIOS, else ../shared/scenarios beside the repo.

Then, in the same run, `nvf match` end to end (the command as a user runs it, a subprocess:
start-up, imports, validation, the optimal solve, the output file) beside the plain
first-come-first-served loop of `benchmarks.fcfs` over the same file (also a fresh process, end to
end; its docstring says exactly what it does), in both of its variants: rules checked before the
capacity (as the contract reads) and capacity first. Each is run `--repeat` times and the best
wall time and its user CPU are kept; the ratios are nvf match / loop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

SCENARIOS = ("tiny", "small", "medium", "large")
POLICIES = ("optimal", "greedy")
TARGET_SECONDS = 5.0
TARGET_PEAK_MB = 1536.0


def _default_dir() -> Path:
    env = os.environ.get("NVF_SCENARIOS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "scenarios"


def run_one(scenario: Path, policy: str, out: Path) -> dict[str, Any]:
    """The measured work, run inside the child process."""
    from matchers.clearing import clear
    from matchers.scenario import load_scenario

    started = time.perf_counter()
    book = load_scenario(scenario)
    allocation = clear(book, policy)  # type: ignore[arg-type]
    allocation.to_jsonl(out)
    seconds = time.perf_counter() - started
    return {
        "placed": allocation.placed,
        "patients": allocation.patients,
        "wait_days": allocation.wait_days,
        "cost_sek": allocation.total_cost_sek,
        "seconds": seconds,
        # Linux reports ru_maxrss in KiB.
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _spawn(scenario: Path, policy: str, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.matching", "--child", str(scenario), policy, str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.name} {policy} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - started
    return result


def _timed(argv: list[str]) -> tuple[float, float]:
    """Best-of wall seconds and the user CPU seconds of that run, for a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def versus_fcfs(scenario: Path, tmp: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """(wall, user) of the best of `repeat` runs of nvf match and of each FCFS loop variant."""
    commands = {
        "nvf match (optimal)": [sys.executable, "-m", "marketplace.entrypoints.cli", "match", str(scenario),
                                "--out", str(tmp / "nvf.jsonl")],
        "FCFS loop, rules then capacity": [sys.executable, "-m", "benchmarks.fcfs", str(scenario),
                                           str(tmp / "fcfs.jsonl")],
        "FCFS loop, capacity first": [sys.executable, "-m", "benchmarks.fcfs", str(scenario),
                                      str(tmp / "fcfs.jsonl"), "--capacity-first"],
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for name, argv in commands.items():
            wall, user = _timed(argv)
            if name not in best or wall < best[name][0]:
                best[name] = (wall, user)
    return best


def _gap(result: dict[str, Any], expected: dict[str, Any] | None) -> tuple[str, str, str]:
    """Distance to the published optimum: placed, wait days, cost in percent."""
    if expected is None:
        return ("-", "-", "-")
    cost_gap = 100 * (result["cost_sek"] - expected["min_cost_sek"]) / expected["min_cost_sek"]
    return (
        f"{result['placed'] - expected['max_allocated']:+d}",
        f"{result['wait_days'] - expected['max_wait_days']:+d}",
        f"{cost_gap:+.3f}%",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.matching", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=None, help="folder of scenario files")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenario names")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    parser.add_argument("--versus", default="large", help="scenario for nvf match vs the FCFS loop ('' to skip)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each in that comparison (best kept)")
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "POLICY", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario, policy, out = args.child
        print(json.dumps(run_one(Path(scenario), policy, Path(out))))
        return 0

    # Piped output gets a wide table rather than Rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 150)
    directory: Path = args.directory or _default_dir()
    names = [n for n in args.scenarios.split(",") if n]
    policies = [p for p in args.policies.split(",") if p]
    missing = [n for n in names if not (directory / f"{n}.json").is_file()]
    if missing:
        console.print(f"[red]no scenario {', '.join(missing)} in {directory}[/red]")
        return 2
    expected_file = directory / "expected.json"
    expected = json.loads(expected_file.read_text()) if expected_file.is_file() else {}

    results: dict[tuple[str, str], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console, transient=True) as progress:
        task = progress.add_task("clearing", total=len(names) * len(policies))
        for name in names:
            for policy in policies:
                progress.update(task, description=f"{name} / {policy}")
                results[name, policy] = _spawn(
                    directory / f"{name}.json", policy, Path(tmp) / f"{name}.jsonl"
                )
                progress.advance(task)

    table = Table(title=f"clearing rounds ({os.cpu_count()} cores, one fresh process per run)")
    columns = ("scenario", "policy", "placed", "wait days", "cost SEK", "seconds", "wall s", "peak MB")
    for column in (*columns, "Δ placed", "Δ days", "Δ cost"):
        table.add_column(
            column, justify="left" if column in ("scenario", "policy") else "right", no_wrap=True
        )
    for (name, policy), r in results.items():
        table.add_row(
            name,
            policy,
            f"{r['placed']}/{r['patients']}",
            str(r["wait_days"]),
            f"{r['cost_sek']:,.1f}",
            f"{r['seconds']:.3f}",
            f"{r['wall']:.2f}",
            f"{r['peak_mb']:.0f}",
            *_gap(r, expected.get(name)),
        )
    console.print(table)
    for name in names:
        if (name, "optimal") in results and (name, "greedy") in results:
            ratio = results[name, "optimal"]["seconds"] / max(results[name, "greedy"]["seconds"], 1e-9)
            console.print(f"{name}: optimal / greedy time = {ratio:.2f}")
    large = results.get(("large", "optimal"))
    if large is not None:
        ok = large["seconds"] < TARGET_SECONDS and large["peak_mb"] < TARGET_PEAK_MB
        verdict = "[green]met[/green]" if ok else "[red]MISSED[/red]"
        console.print(
            f"target large/optimal < {TARGET_SECONDS:.0f} s and < {TARGET_PEAK_MB:.0f} MB: {verdict} "
            f"({large['seconds']:.2f} s, wall {large['wall']:.2f} s, {large['peak_mb']:.0f} MB)"
        )
    if args.versus:
        _print_versus(console, directory / f"{args.versus}.json", args.repeat)
    return 0


def _print_versus(console: Console, scenario: Path, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        best = versus_fcfs(scenario, Path(tmp), repeat)
    table = Table(title=f"{scenario.name}: nvf match end to end vs a plain FCFS loop "
                        f"(fresh processes, best of {repeat})")
    for column in ("command", "wall s", "user CPU s", "nvf/this wall", "nvf/this CPU"):
        table.add_column(column, justify="left" if column == "command" else "right", no_wrap=True)
    nvf_wall, nvf_user = best["nvf match (optimal)"]
    for name, (wall, user) in best.items():
        table.add_row(name, f"{wall:.2f}", f"{user:.2f}", f"{nvf_wall / wall:.2f}", f"{nvf_user / max(user, 1e-9):.2f}")
    console.print(table)
    for name, (wall, user) in best.items():
        if name.startswith("FCFS"):
            console.print(f"ratio nvf match/{name}: wall {nvf_wall / wall:.2f}, "
                          f"user CPU {nvf_user / max(user, 1e-9):.2f} (target <= 0.20)")


if __name__ == "__main__":
    sys.exit(main())
