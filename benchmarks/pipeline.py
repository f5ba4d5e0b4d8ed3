"""The marketplace's pipeline beside the same work done bare, one Redis, one database: `python -m benchmarks.pipeline`.

Many regions publish offers and requests onto their ingress streams; the marketplace's intake and
matcher (`nvf run --role intake` and `--role matcher`, two processes, auto-clearing every
NVF_AUTO_CLEAR_MS) turn them into `match.proposed` on the matches stream. In the same run, on the
same database (PostgreSQL with DATABASE_URL, each deployment in a schema of its own; else a SQLite
file each) and the same Redis (each on a stream prefix of its own), the same work is done bare by
two processes (benchmarks/same_work.py): the same entries read with XREADGROUP in a consumer group,
the same number of rows per event written durably into the marketplace's own tables (COPY per batch
on PostgreSQL, executemany on SQLite, one UPDATE per table per batch), the same number of outgoing
entries XADDed, then XACK.

Phases, in order:

1. Calibration: a marketplace whose two processes run under benchmarks/counted_worker.py (a
   SQLAlchemy `after_cursor_execute` listener tallying rows per table and statement) takes a
   batch of offers, settles, then requests for them, and settles. Rows inserted, updated and
   deleted per offer and per request event, and outbox rows (each one XADD), per process, are
   printed and handed to the same-work loop. The partition leases' renewals are left out: the
   clock writes them, not the events.
2. Throughput: `--events` offers and requests published as fast as the regions can (pipelined);
   events per second until the last request is matched. Same-work, then the marketplace.
3. Latency at `--latency-rate` events per second with a deep book: first `--deep-patients`
   patients (`--per-request` a request) that nothing can place (tests/factories.unplaceable_requests:
   every care area, a price ceiling of 1 SEK, below every offer) are published and settled: for
   the marketplace, every one of them has had its `patient.not_placed` (so it is on its book and a
   round has read it) and every consumer group has read everything (`drained`); for the same-work
   loop, its groups have read and acked everything. The tables are then ANALYZEd (each
   deployment's own), as autovacuum would have done on a database that has run for a while. Only
   then are offers and requests published at the set rate, and each request's
   publish-to-`match.proposed` time is taken here (XREAD of the matches stream).
4. For reference only, not the comparison: the old bare redis-py loop (XREADGROUP + XACK, no
   database) at full rate.

Each phase runs on fresh processes, prefix and schema (or file), removed afterwards. The last line
printed is `ratio marketplace/same-work: X`, the throughput ratio. With REDIS_URL unset an embedded
Redis is started; with DATABASE_URL unset, SQLite. Progress goes to the terminal while it runs
(plain lines when it is not one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.same_work import Rates
from events import Envelope, Streams
from matchers.reference import care_areas, regions
from tests.factories import market_events, unplaceable_requests

DATA_FIELD = "__data__"
REPO = Path(__file__).resolve().parents[1]
# Written by the clock, not per event (a partition's writer renews its lease every few seconds).
TIMED = ":partition_leases"
Body = tuple[str | None, str, str]  # (the key latency is measured by, stream, envelope JSON)


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


class Reporter:
    """Progress of the phase running: a rich bar on a terminal, a plain line every few seconds off one."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def say(self, text: str) -> None:
        self.console.print(text)

    @contextmanager
    def phase(self, name: str, total: int) -> Iterator[Callable[[int], None]]:
        if self.console.is_terminal:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=self.console, transient=True) as progress:
                task = progress.add_task(name, total=total)
                yield lambda done: progress.update(task, completed=done)
            self.console.print(f"{name}: done")
            return
        started = time.perf_counter()
        last = [started]
        print(f"{name}: 0/{total}", flush=True)

        def update(done: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= 3:
                last[0] = now
                print(f"{name}: {done}/{total} ({now - started:.0f} s)", flush=True)

        yield update
        print(f"{name}: done in {time.perf_counter() - started:.1f} s", flush=True)


async def publish(redis: Any, bodies: list[Body], rate: float, sent_at: dict[str, float],
                  producers: int = 21) -> float:
    """Regions publish `bodies`; at `rate` per second overall, or as fast as they can (pipelined)
    when rate is 0. Returns when the last one is out; records publish times by key."""
    shards = [bodies[i::producers] for i in range(producers)]

    async def region(items: list[Body]) -> None:
        if rate <= 0:
            for i in range(0, len(items), 100):
                chunk = items[i:i + 100]
                async with redis.pipeline(transaction=False) as pipe:
                    for _key, stream, body in chunk:
                        pipe.xadd(stream, {DATA_FIELD: body})
                    now = time.perf_counter()
                    for key, _stream, _body in chunk:
                        if key:
                            sent_at[key] = now
                    await pipe.execute()
            return
        interval = producers / rate
        next_at = time.perf_counter()
        for key, stream, body in items:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if key:
                sent_at[key] = time.perf_counter()
            await redis.xadd(stream, {DATA_FIELD: body})
            next_at += interval

    started = time.perf_counter()
    await asyncio.gather(*(region(s) for s in shards))
    return time.perf_counter() - started


async def last_id(redis: Any, stream: str) -> str:
    info = await redis.xinfo_stream(stream) if await redis.exists(stream) else None
    return info["last-generated-id"].decode() if info else "0-0"


async def watch(redis: Any, stream: str, start: str, kind: str, key: str, wanted: set[str],
                seen: dict[str, float], timeout_s: float, progress: Callable[[int], None],
                alive: Callable[[], None]) -> None:
    """XREAD `stream` from after `start` until every key in `wanted` has had a `kind` event."""
    last = start
    deadline = time.perf_counter() + timeout_s
    while len(seen) < len(wanted) and time.perf_counter() < deadline:
        alive()
        reply = await redis.xread({stream: last}, count=2000, block=100)
        now = time.perf_counter()
        for _, items in reply or ():
            for eid, fields in items:
                last = eid
                data = json.loads(fields[DATA_FIELD.encode()])
                if data.get("type") == kind:
                    k = data["payload"][key]
                    if k in wanted and k not in seen:
                        seen[k] = now
        progress(len(seen))


def _field(info: dict[Any, Any], name: str) -> Any:
    return info.get(name, info.get(name.encode()))


async def drained(redis: Any, prefix: str) -> bool:
    """Every consumer group has read everything on the ingress and book streams, and acked the
    ingress. (The marketplace's matcher may hold a book entry unacked for a while after a partition
    changes hands, until its claimer takes it back; the entry only wakes the auto-clearer, and what
    it woke for is observed otherwise: the matches or `patient.not_placed` waited for.)"""
    for pattern in (f"{prefix}:ingress:*", f"{prefix}:book:*"):
        async for stream in redis.scan_iter(match=pattern, count=1000):
            if await redis.type(stream) != b"stream":
                continue
            for group in await redis.xinfo_groups(stream):
                if _field(group, "lag") not in (0, None) or (":ingress:" in str(stream) and _field(group, "pending")):
                    return False
    return True


async def settle(redis: Any, deployment: Deployment, timeout_s: float, quiet_s: float = 1.5) -> None:
    """Wait until the groups are drained and the counted rows (if any) have not moved for `quiet_s`."""
    prefix = deployment.prefix
    counts = list(deployment.counts.values())
    deadline = time.perf_counter() + timeout_s
    last: list[str] = []
    since = time.perf_counter()
    while time.perf_counter() < deadline:
        deployment.alive()
        now_counts = [p.read_text() if p.exists() else "" for p in counts]
        if now_counts != last or not await drained(redis, prefix):
            last, since = now_counts, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{prefix} did not settle in {timeout_s:.0f} s")


# --- the two deployments --------------------------------------------------------------------------


class Deployment:
    """The marketplace (an intake and a matcher process) or the same work bare, on its own prefix
    and schema (or SQLite file)."""

    def __init__(self, args: argparse.Namespace, workdir: Path, kind: str, rates: Rates | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        self.kind = kind  # "marketplace", "counted" (the marketplace, its rows counted) or "same-work"
        self.prefix = f"bench-{tag}"
        self.streams = Streams(self.prefix)
        self.schema = f"nvf_bench_{tag}" if args.database_url else None
        self.database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / f'{tag}.db'}"
        self.workdir = workdir
        self.rates = rates
        self.args = args
        self.env = {**os.environ, "REDIS_URL": args.redis_url, "DATABASE_URL": self.database_url,
                    "NVF_DB_SCHEMA": self.schema or "", "NVF_STREAM_PREFIX": self.prefix,
                    "NVF_STATE_DIR": str(workdir / tag), "NVF_AUTO_CLEAR_MS": str(args.auto_clear_ms),
                    "NVF_BATCH_SIZE": str(args.batch_size), "NVF_POLLING_MS": "50", "NVF_LOG_LEVEL": args.log_level,
                    "NVF_LOG_FORMAT": "json", "NVF_TRIM_INTERVAL_S": "5"}
        self.counts = {role: workdir / f"{self.prefix}-{role}-counts.json" for role in ("intake", "matcher")}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _command(self, role: str) -> list[str]:
        if self.kind == "same-work":
            return [sys.executable, "-m", "benchmarks.same_work", str(self.workdir / f"{self.prefix}.json"), role]
        if self.kind == "counted":
            return [sys.executable, "-m", "benchmarks.counted_worker", str(self.counts[role]), "run", "--role", role]
        return [sys.executable, "-m", "marketplace.entrypoints.cli", "run", "--role", role]

    async def start(self, redis: Any) -> None:
        from marketplace.adapters.database import Database

        db = Database(self.database_url, schema=self.schema)
        await db.create_all()  # once, before two processes race to create the same tables
        await db.dispose()
        if self.kind == "same-work":
            await self._prepare_same_work(redis)
        for role in ("intake", "matcher"):
            log = (self.workdir / f"{self.prefix}-{role}.log").open("wb")
            self.procs.append(subprocess.Popen(
                self._command(role), cwd=REPO, env=self.env,
                stdout=subprocess.PIPE if self.kind == "same-work" else log, stderr=log))
        if self.kind == "same-work":
            for p in self.procs:
                assert p.stdout is not None
                line = await asyncio.to_thread(p.stdout.readline)
                if line.strip() != b"ready":
                    raise RuntimeError(f"the same-work loop did not start; see {self.workdir}")
            return
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            locks = [k async for k in redis.scan_iter(match=f"{self.prefix}:lock:*")]
            groups = await redis.exists(self.streams.ingress("01"))
            if len(locks) >= len(care_areas()) and groups:
                return
            if any(p.poll() is not None for p in self.procs):
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"workers did not start; see {self.workdir}")

    async def _prepare_same_work(self, redis: Any) -> None:
        streams = {"intake": [self.streams.ingress(r) for r in sorted(regions())],
                   "matcher": [self.streams.book(a) for a in sorted(care_areas())]}
        for role, names in streams.items():
            for name in names:
                await redis.xgroup_create(name, f"same-work-{role}", id="0", mkstream=True)
        config = {"redis_url": self.args.redis_url, "database_url": self.database_url, "schema": self.schema,
                  "prefix": self.prefix, "batch_size": self.args.batch_size, "rates": self.rates,
                  "streams": streams}
        (self.workdir / f"{self.prefix}.json").write_text(json.dumps(config))

    async def stop(self, redis: Any) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        keys = [k async for k in redis.scan_iter(match=f"{self.prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await redis.delete(*keys[i:i + 500])
        if self.kind != "same-work":
            from marketplace.adapters.redis_users import remove
            from marketplace.parties import all_parties

            await remove(redis, self.prefix, all_parties())  # the users `nvf run` applied
        from marketplace.adapters.database import Database

        db = Database(self.database_url, schema=self.schema)
        await db.drop_schema()
        await db.dispose()

    async def analyze(self) -> None:
        """The planner's statistics of the tables just filled, as autovacuum would have them on a
        database that has been running a while: a schema filled seconds ago has none, and a plan
        made on "one row" where there are twenty thousand can run a thousand times too long."""
        from sqlalchemy import text
        from sqlmodel import SQLModel

        from marketplace.adapters.database import Database

        db = Database(self.database_url, schema=self.schema)
        try:
            async with db.engine.begin() as conn:
                for table in SQLModel.metadata.sorted_tables:
                    await conn.execute(text(f'ANALYZE "{table.name}"'))
        finally:
            await db.dispose()

    def alive(self) -> None:
        """Raises if a process has died (its log says why)."""
        if any(p.poll() is not None for p in self.procs):
            raise RuntimeError(f"a {self.kind} process has exited; see its log in {self.workdir} (--keep)")

    def counted(self) -> dict[str, dict[str, int]]:
        return {role: json.loads(p.read_text()) if p.exists() else {} for role, p in self.counts.items()}


def request_id_of(envelope: Envelope) -> str | None:
    return envelope.payload.get("request_id") if envelope.type == "request.published" else None


def bodies_of(deployment: Deployment, events: list[Envelope], keyed: bool = True) -> list[Body]:
    return [(request_id_of(e) if keyed else None, deployment.streams.ingress(e.producer), e.to_json())
            for e in events]


async def publish_and_wait(redis: Any, deployment: Deployment, events: list[Envelope], rate: float, name: str,
                           reporter: Reporter, timeout_s: float) -> Result:
    """Publish `events` (at `rate`, or flat out); wait for every request's match.proposed."""
    bodies = bodies_of(deployment, events)
    wanted = {key for key, _, _ in bodies if key}
    sent_at: dict[str, float] = {}
    seen: dict[str, float] = {}
    start = await last_id(redis, deployment.streams.matches)
    with reporter.phase(f"{name}: requests matched", len(wanted)) as progress:
        started = time.perf_counter()
        watcher = asyncio.create_task(watch(redis, deployment.streams.matches, start, "match.proposed",
                                            "request_id", wanted, seen, timeout_s, progress, deployment.alive))
        await publish(redis, bodies, rate, sent_at)
        await watcher
    seconds = (max(seen.values()) if seen else time.perf_counter()) - started
    latencies = [(seen[k] - sent_at[k]) * 1000 for k in seen]
    note = "" if len(seen) == len(wanted) else f"only {len(seen)}/{len(wanted)} matched in {timeout_s:.0f} s"
    return Result(name, len(events), seconds, latencies, note)


# --- the phases ---------------------------------------------------------------------------------


async def calibrate(redis: Any, args: argparse.Namespace, workdir: Path, reporter: Reporter) -> Rates:
    """Rows per offer and per request event, per process, as the marketplace writes them today."""
    deployment = Deployment(args, workdir, "counted")
    await deployment.start(redis)
    try:
        events = list(market_events(deployment.prefix, args.calibration_events))
        offers = [e for e in events if e.type == "offer.published"]
        requests = [e for e in events if e.type == "request.published"]
        with reporter.phase("calibration: offers settled", 1):
            await publish(redis, bodies_of(deployment, offers, keyed=False), 0, {})
            await settle(redis, deployment, args.timeout)
        after_offers = deployment.counted()
        await publish_and_wait(redis, deployment, requests, 0, "calibration", reporter, args.timeout)
        await settle(redis, deployment, args.timeout)
        after_requests = deployment.counted()
    finally:
        await deployment.stop(redis)
    rates: Rates = {}
    for role in ("intake", "matcher"):
        before = {k: v for k, v in after_offers[role].items() if not k.endswith(TIMED)}
        after = {k: v for k, v in after_requests[role].items() if not k.endswith(TIMED)}
        rates[role] = {
            "offer.published": {k: v / len(offers) for k, v in before.items() if v},
            "request.published": {k: (v - before.get(k, 0)) / len(requests)
                                  for k, v in after.items() if v - before.get(k, 0)},
        }
    return rates


def rates_table(rates: Rates, args: argparse.Namespace) -> Table:
    table = Table(title=f"what the marketplace writes per event (counted over {args.calibration_events} events; "
                        "the same-work loop writes as much)")
    for column in ("event", "process", "table", "rows inserted", "updated", "deleted", "statements"):
        table.add_column(column, justify="left" if column in ("event", "process", "table") else "right")
    verbs = ("insert", "update", "delete", "statements")
    for kind in ("offer.published", "request.published"):
        for role in ("intake", "matcher"):
            per = rates[role][kind]
            for name in sorted({k.split(":", 1)[1] for k in per}):
                table.add_row(kind, role, name, *(f"{per.get(f'{verb}:{name}', 0):.2f}" for verb in verbs))
            totals = (sum(v for k, v in per.items() if k.startswith(f"{verb}:")) for verb in verbs)
            table.add_row(kind, role, f"[b]all; XADDs {per.get('insert:outbox', 0):.2f}[/b]",
                          *(f"[b]{t:.2f}[/b]" for t in totals), end_section=True)
    return table


def rows_per_event(rates: Rates, kind: str) -> float:
    return sum(v for role in rates.values() for k, v in role.get(kind, {}).items() if not k.startswith("statements:"))


async def throughput(redis: Any, args: argparse.Namespace, workdir: Path, reporter: Reporter, kind: str,
                     rates: Rates | None, name: str) -> Result:
    deployment = Deployment(args, workdir, kind, rates)
    await deployment.start(redis)
    try:
        events = list(market_events(deployment.prefix, args.events))
        return await publish_and_wait(redis, deployment, events, 0, name, reporter, args.timeout)
    finally:
        await deployment.stop(redis)


async def latency(redis: Any, args: argparse.Namespace, workdir: Path, reporter: Reporter, kind: str,
                  rates: Rates | None, name: str) -> Result:
    deployment = Deployment(args, workdir, kind, rates)
    await deployment.start(redis)
    try:
        deep = list(unplaceable_requests(deployment.prefix, args.deep_patients, per_request=args.per_request))
        cases = {p["case_ref"] for e in deep for p in e.payload["patients"]}
        with reporter.phase(f"{name}: deep book, {len(cases)} unplaceable patients settled", len(cases)) as progress:
            start = await last_id(redis, deployment.streams.matches)
            await publish(redis, bodies_of(deployment, deep, keyed=False), 0, {})
            if kind != "same-work":  # the bare loop matches nothing it cannot place and says nothing of it
                seen: dict[str, float] = {}
                await watch(redis, deployment.streams.matches, start, "patient.not_placed", "case_ref", cases, seen,
                            args.timeout, progress, deployment.alive)
                if len(seen) < len(cases):
                    raise RuntimeError(f"only {len(seen)}/{len(cases)} deep-book patients settled")
            await settle(redis, deployment, args.timeout)
        await deployment.analyze()
        events = list(market_events(deployment.prefix, int(args.latency_rate * args.latency_seconds)))
        return await publish_and_wait(redis, deployment, events, args.latency_rate, name, reporter, args.timeout)
    finally:
        await deployment.stop(redis)


async def failed_as_note(phase: Coroutine[Any, Any, Result], name: str, reporter: Reporter) -> Result:
    """The phase's result, or an empty one that says why it failed (the other phases still count)."""
    try:
        return await phase
    except RuntimeError as failed:
        reporter.say(f"[red]{failed}[/red]")
        return Result(name, 0, 0.0, note=f"failed: {failed}")


# --- for reference only: the old bare redis-py loop (no database) ----------------------------------


def raw_consumer(redis_url: str, stream: str, count: int) -> None:
    """In its own process: XREADGROUP + XACK `count` entries; prints when the last was acked."""
    import redis as sync_redis

    client: Any = sync_redis.Redis.from_url(redis_url)
    done = 0
    print("ready", flush=True)
    while done < count:
        reply = client.xreadgroup("raw", "c1", {stream: ">"}, count=200, block=1000)
        for _, items in reply or ():
            ids = [eid for eid, _ in items]
            client.xack(stream, "raw", *ids)
            done += len(ids)
    print(json.dumps({"last_at": time.time()}), flush=True)


async def run_raw(redis: Any, args: argparse.Namespace) -> Result:
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await redis.xgroup_create(stream, "raw", id="0", mkstream=True)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.pipeline", "--raw-consumer", stream, str(args.events)],
                            cwd=REPO, env={**os.environ, "REDIS_URL": args.redis_url}, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        await asyncio.to_thread(proc.stdout.readline)  # ready
        bodies: list[Body] = [(None, stream, e.to_json()) for e in market_events(stream, args.events)]
        started_wall = time.time()
        await publish(redis, bodies, 0, {})
        out, _ = await asyncio.to_thread(proc.communicate, timeout=args.timeout)
        seconds = json.loads(out.decode().strip().splitlines()[-1])["last_at"] - started_wall
        return Result("(reference, not the comparison) XREADGROUP + XACK, no database, 1 process", args.events,
                      seconds)
    finally:
        if proc.poll() is None:
            proc.kill()
        await redis.delete(stream)


# --- the run ------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


async def main_async(args: argparse.Namespace, console: Console) -> int:
    import redis.asyncio as aioredis

    from marketplace.adapters.embedded_redis import EmbeddedRedis

    reporter = Reporter(console)
    workdir = Path(tempfile.mkdtemp(prefix="nvf-bench-"))
    embedded = None
    if not args.redis_url:
        embedded = EmbeddedRedis(workdir / "redis")
        args.redis_url = embedded.start()
    redis = aioredis.from_url(args.redis_url)
    database = "PostgreSQL" if args.database_url else "SQLite (a file each)"
    try:
        console.print(f"redis {args.redis_url.split('@')[-1]}, database {database}; {args.events} events for "
                      f"throughput; {args.latency_rate:.0f}/s for {args.latency_seconds:.0f} s for latency on a book "
                      f"of {args.deep_patients} unplaceable patients; auto-clear {args.auto_clear_ms} ms, "
                      f"batches of {args.batch_size}")
        phases = set(args.phases.split(","))
        skipped = Result("-", 0, 0.0, note="not run (--phases)")
        rates = await calibrate(redis, args, workdir, reporter) if "same-work" in phases else None
        if rates is not None:
            console.print(rates_table(rates, args))
        same = market = same_lat = market_lat = raw = skipped
        if "throughput" in phases:
            if rates is not None:
                same = await throughput(redis, args, workdir, reporter, "same-work", rates,
                                        "same-work loop (2 processes), max rate")
            market = await throughput(redis, args, workdir, reporter, "marketplace", None,
                                      "marketplace (intake + matcher), max rate")
        rate = f"{args.latency_rate:.0f}/s"
        if "latency" in phases:
            if rates is not None:
                name = f"same-work loop, {rate}, deep book"
                same_lat = await failed_as_note(latency(redis, args, workdir, reporter, "same-work", rates, name),
                                                name, reporter)
            name = f"marketplace, {rate}, deep book"
            market_lat = await failed_as_note(latency(redis, args, workdir, reporter, "marketplace", None, name),
                                              name, reporter)
        if "raw" in phases:
            raw = await run_raw(redis, args)
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()
        if args.keep:
            console.print(f"workers' logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"pipeline on {database}: publish -> intake -> book -> clearing -> match.proposed")
    for column in ("run", "events", "seconds", "events/s", "p50 ms", "p99 ms", "note"):
        table.add_column(column, justify="right" if column not in ("run", "note") else "left")
    for r in (same, market, same_lat, market_lat, raw):
        table.add_row(r.name, str(r.events), f"{r.seconds:.2f}", _fmt(r.rate), _fmt(r.pct(0.5)), _fmt(r.pct(0.99)),
                      r.note)
    console.print(table)
    ratio = market.rate / same.rate if same.rate else 0.0
    p99 = market_lat.pct(0.99)
    if rates is not None:
        console.print(f"rows written per event (both processes): offer {rows_per_event(rates, 'offer.published'):.1f}, "
                      f"request {rows_per_event(rates, 'request.published'):.1f}")
    console.print(f"targets: ratio >= 0.5: {ratio:.3f} ({'met' if ratio >= 0.5 else 'missed'}); "
                  f"p99 <= 250 ms at {rate} with the deep book: {_fmt(p99)} ms "
                  f"({'met' if p99 is not None and p99 <= 250 else 'missed'})")
    print(f"ratio marketplace/same-work: {ratio:.3f}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000, help="events for the throughput runs")
    parser.add_argument("--calibration-events", type=int, default=500, help="events counted for rows per event")
    parser.add_argument("--latency-rate", type=float, default=200.0, help="events per second for the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--deep-patients", type=int, default=20_000, help="unplaceable patients on the book")
    parser.add_argument("--per-request", type=int, default=10, help="deep-book patients per request")
    parser.add_argument("--auto-clear-ms", type=int, default=int(os.environ.get("NVF_AUTO_CLEAR_MS") or 20))
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting on a phase after this")
    parser.add_argument("--log-level", default="WARNING", help="the workers' log level (their logs: --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the workers' logs")
    parser.add_argument("--phases", default="same-work,throughput,latency,raw",
                        help="what to run, comma-separated (to iterate faster; the ratio needs all but raw): "
                             "same-work (the calibration and the same-work runs), throughput, latency, raw")
    parser.add_argument("--raw-consumer", nargs=2, metavar=("STREAM", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.redis_url = os.environ.get("REDIS_URL") or None
    args.database_url = os.environ.get("DATABASE_URL") or None
    if args.raw_consumer:
        raw_consumer(args.redis_url, args.raw_consumer[0], int(args.raw_consumer[1]))
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log's tables as wide as they need
    return asyncio.run(main_async(args, console))


if __name__ == "__main__":
    sys.exit(main())
