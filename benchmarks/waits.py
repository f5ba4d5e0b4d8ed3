"""Benchmark of the waiting-time import: `python -m benchmarks.waits [--repeat N]`.

Imports the shipped sample into an empty store (SQLite file in a temporary directory, and
PostgreSQL in its own schema when DATABASE_URL points there), then the same file again (nothing
changes), then a copy with one corrected row; prints seconds and rows per second for each, the
median of N runs, and each step's time as a ratio to the first import.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

from marketplace.adapters.database import Database
from marketplace.services.waiting_times import import_bytes, sample_bytes

CHANGED_FROM = "2026-10;01;cataract;waiting;4285;1532;1386;752;352;217;46;0;0,856;42;;0"
CHANGED_TO = "2026-10;01;cataract;waiting;4290;1537;1386;752;352;217;46;0;0,857;42;;0"


async def one_run(url: str, schema: str | None) -> dict[str, float]:
    db = Database(url, schema=schema)
    await db.create_all()
    data = sample_bytes()
    changed = data.decode("utf-8").replace(CHANGED_FROM, CHANGED_TO).encode("utf-8")
    times: dict[str, float] = {}
    try:
        for step, body in (("first import", data), ("same file again", data), ("one row changed", changed)):
            started = time.perf_counter()
            await import_bytes(db, body, source="bench.csv")
            times[step] = time.perf_counter() - started
    finally:
        await db.drop_schema()
        await db.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from marketplace.log_config import configure_logging

    configure_logging("json", "WARNING")
    targets: list[tuple[str, str, str | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        targets.append(("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", None))
        if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
            targets.append(("PostgreSQL", os.environ["DATABASE_URL"], f"nvf_bench_{uuid.uuid4().hex[:8]}"))
        rows = sample_bytes().count(b"\n") - 1
        table = Table(title=f"waiting-time import of the shipped sample ({rows} rows), median of {args.repeat}")
        for heading in ("database", "step", "seconds", "rows/s", "ratio to first import"):
            table.add_column(heading, justify="left" if heading in ("database", "step") else "right")
        for name, url, schema in targets:
            runs = [asyncio.run(one_run(url, schema)) for _ in range(args.repeat)]
            first = statistics.median(r["first import"] for r in runs)
            for step in runs[0]:
                seconds = statistics.median(r[step] for r in runs)
                table.add_row(name, step, f"{seconds:.3f}", f"{rows / seconds:,.0f}", f"{seconds / first:.2f}")
        Console().print(table)


if __name__ == "__main__":
    main()
