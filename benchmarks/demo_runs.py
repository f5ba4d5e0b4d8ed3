"""The medium demo run several times in a row: `python -m benchmarks.demo_runs [--runs 10]`.

Each run is `nvf demo --scenario <scenarios>/medium.json` as a user types it, in a fresh process on
the embedded defaults (REDIS_URL and DATABASE_URL unset, a fresh state directory), one after the
other. Per run: wall seconds, user CPU seconds (of the demo process and its children), whether it
hit the run's timeout (a hang), and the waits inside it that gave up: a party waiting for cases
that never got there (`demo_regions.cases_behind`), for receipts that never came
(`demo_regions.receipts_missing`), a message a receiving agent refused, or a referral refused as
"no functional address" (the address-book race). The target: at most 30 s a run, and no run hits
a timeout or gives up a wait.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
GAVE_UP = ("demo_regions.cases_behind", "demo_regions.receipts_missing", "demo_regions.message_refused",
           "demo_regions.message_refused_by_receiver", "demo_regions.agents_behind")


def one_run(scenario: Path, timeout_s: float, log: Path | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "NVF_DB_SCHEMA")}
    with tempfile.TemporaryDirectory() as tmp:
        env.update(NVF_STATE_DIR=str(Path(tmp) / "state"), NVF_LOG_FORMAT="json")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "marketplace.entrypoints.cli", "demo", "--scenario",
                                   str(scenario), "--out", str(Path(tmp) / "A.jsonl")],
                                  capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout_s, check=False)
            code, stdout, stderr, timed_out = done.returncode, done.stdout, done.stderr, False
        except subprocess.TimeoutExpired as exc:
            code, timed_out = None, True
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        wall = time.perf_counter() - started
        user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
    if log is not None:
        log.write_text(stderr, encoding="utf-8")
    gave_up: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event in GAVE_UP:
                gave_up.append(event)
        if "no functional address" in line:
            gave_up.append("no functional address")
    return {"wall": wall, "user": user, "code": code, "timed_out": timed_out, "gave_up": sorted(set(gave_up)),
            "placed": next((ln for ln in stdout.splitlines() if ln.startswith("placed ")), "")[:60]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_runs", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run counts as hung")
    parser.add_argument("--logs", type=Path, default=None, help="keep each run's log (stderr) in this folder")
    parser.add_argument("--scenario", type=Path, default=REPO / ".." / "shared" / "scenarios" / "medium.json")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    results = []
    for i in range(args.runs):
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
        result = one_run(args.scenario, args.timeout, args.logs / f"run-{i + 1}.log" if args.logs else None)
        results.append(result)
        console.print(f"run {i + 1}/{args.runs}: {result['wall']:.1f} s wall, {result['user']:.1f} s user, "
                      f"exit {result['code']}{' TIMEOUT' if result['timed_out'] else ''} {result['gave_up'] or ''}")
    table = Table(title=f"nvf demo --scenario {args.scenario.name}, {args.runs} runs in a row "
                        f"(embedded defaults, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    for column in ("run", "wall s", "user CPU s", "exit", "timed out", "waits given up", "outcome"):
        table.add_column(column, justify="right" if column in ("run", "wall s", "user CPU s") else "left")
    for i, r in enumerate(results, 1):
        table.add_row(str(i), f"{r['wall']:.1f}", f"{r['user']:.1f}", str(r["code"]), "yes" if r["timed_out"] else "no",
                      ", ".join(r["gave_up"]) or "-", str(r["placed"]))  # type: ignore[arg-type]
    console.print(table)
    walls = [float(r["wall"]) for r in results]  # type: ignore[arg-type]
    bad = [r for r in results if r["timed_out"] or r["gave_up"] or r["code"] != 0]
    console.print(f"wall: median {statistics.median(walls):.1f} s, min {min(walls):.1f} s, max {max(walls):.1f} s "
                  f"(target <= 30 s); runs with a timeout or a wait given up: {len(bad)} of {len(results)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
