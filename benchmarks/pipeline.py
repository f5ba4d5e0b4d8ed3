"""Throughput and latency of the whole pipeline against a real Redis: `python -m benchmarks.pipeline`.

Many regions publish offers and requests onto the intake stream; an intake process and a matcher
process (`nvf run --role ...`, auto-clearing every NVF_AUTO_CLEAR_MS) turn them into proposed
matches. Measured, per phase, in this process: throughput (events published per second until the
last request is matched, publishing as fast as the regions can) and latency from a request's
publish to its `match.proposed` on the matches stream (at a set rate). In the same run, a plain
redis-py loop carries the same messages (regions XADD, a consumer process XREADGROUP + XACK) as
the ceiling. With REDIS_URL unset an embedded Redis is started; with DATABASE_URL unset, SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from events import Envelope
from matchers.reference import care_areas
from tests.factories import market_events

DATA_FIELD = "__data__"
REPO = Path(__file__).resolve().parents[1]


# --- the load ----------------------------------------------------------------------------------


def request_id_of(envelope: Envelope) -> str | None:
    return envelope.payload.get("request_id") if envelope.type == "request.published" else None


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


async def publish(redis: Any, bodies: list[tuple[str | None, str, str]], rate: float,
                  sent_at: dict[str, float], producers: int = 21) -> float:
    """Regions publish `bodies` (key, stream, json); at `rate` per second overall, or as fast as they
    can (pipelined) when rate is 0. Returns when the last one is out; records publish times by key."""
    shards = [bodies[i::producers] for i in range(producers)]

    async def region(items: list[tuple[str | None, str, str]]) -> None:
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


async def watch_matches(redis: Any, stream: str, sent_at: dict[str, float], wanted: int,
                        seen: dict[str, float], timeout_s: float) -> None:
    """Read match.proposed events (plain XREAD from the start) until `wanted` requests have one."""
    last = "0-0"
    deadline = time.perf_counter() + timeout_s
    while len(seen) < wanted and time.perf_counter() < deadline:
        reply = await redis.xread({stream: last}, count=1000, block=100)
        now = time.perf_counter()
        for _, items in reply or ():
            for eid, fields in items:
                last = eid
                data = json.loads(fields[DATA_FIELD.encode()])
                if data.get("type") == "match.proposed":
                    rid = data["payload"]["request_id"]
                    if rid in sent_at and rid not in seen:
                        seen[rid] = now


# --- the marketplace under load --------------------------------------------------------------


class Deployment:
    """An intake process and a matcher process on their own prefix and database."""

    def __init__(self, redis_url: str, database_url: str | None, workdir: Path, auto_clear_ms: int,
                 batch_size: int, log_level: str = "WARNING") -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench-{tag}"
        self.schema = f"nvf_bench_{tag}" if database_url else None
        self.database_url = database_url or f"sqlite+aiosqlite:///{workdir / f'{tag}.db'}"
        self.redis_url = redis_url
        self.env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": self.database_url,
                    "NVF_DB_SCHEMA": self.schema or "", "NVF_STREAM_PREFIX": self.prefix,
                    "NVF_STATE_DIR": str(workdir / tag), "NVF_AUTO_CLEAR_MS": str(auto_clear_ms),
                    "NVF_BATCH_SIZE": str(batch_size), "NVF_POLLING_MS": "50", "NVF_LOG_LEVEL": log_level,
                    "NVF_LOG_FORMAT": "json", "NVF_TRIM_INTERVAL_S": "5"}
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    async def start(self, redis: Any) -> None:
        from marketplace.adapters.database import Database

        db = Database(self.database_url, schema=self.schema)
        await db.create_all()  # once, before two processes race to create the same tables
        await db.dispose()
        for role in ("intake", "matcher"):
            log = (self.workdir / f"{self.prefix}-{role}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "marketplace.entrypoints.cli", "run", "--role", role],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            locks = [k async for k in redis.scan_iter(match=f"{self.prefix}:lock:*")]
            groups = await redis.exists(f"{self.prefix}:ingress:01")
            if len(locks) >= len(care_areas()) and groups:
                return
            if any(p.poll() is not None for p in self.procs):
                break
            await asyncio.sleep(0.1)
        raise RuntimeError(f"workers did not start; see {self.workdir}")

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
        if keys:
            await redis.delete(*keys)
        from marketplace.adapters.redis_users import remove
        from marketplace.parties import all_parties

        await remove(redis, self.prefix, all_parties())  # the users `nvf run` applied
        from marketplace.adapters.database import Database

        db = Database(self.database_url, schema=self.schema)
        if self.schema:
            await db.drop_schema()
        await db.dispose()


async def run_marketplace(redis: Any, args: argparse.Namespace, workdir: Path, *, count: int, rate: float,
                          name: str) -> Result:
    from events import Streams

    deployment = Deployment(args.redis_url, args.database_url, workdir, args.auto_clear_ms, args.batch_size,
                            args.log_level)
    await deployment.start(redis)
    streams = Streams(deployment.prefix)
    try:
        events = list(market_events(deployment.prefix, count))
        # Each region's events on its own ingress stream (published here with the admin client).
        bodies = [(request_id_of(e), streams.ingress(e.producer), e.to_json()) for e in events]
        wanted = sum(1 for key, _, _ in bodies if key)
        sent_at: dict[str, float] = {}
        seen: dict[str, float] = {}
        started = time.perf_counter()
        watcher = asyncio.create_task(watch_matches(redis, streams.matches, sent_at, wanted, seen, args.timeout))
        await publish(redis, bodies, rate, sent_at)
        await watcher
        seconds = (max(seen.values()) if seen else time.perf_counter()) - started
        latencies = [(seen[k] - sent_at[k]) * 1000 for k in seen]
        note = "" if len(seen) == wanted else f"only {len(seen)}/{wanted} requests matched in {args.timeout:.0f} s"
        return Result(name, count, seconds, latencies, note)
    finally:
        await deployment.stop(redis)


# --- the ceiling: a plain redis-py loop ------------------------------------------------------


def raw_consumer(redis_url: str, stream: str, count: int) -> None:
    """In its own process: XREADGROUP + XACK the raw stream; prints the latencies (ms) as JSON."""
    import redis as sync_redis

    client: Any = sync_redis.Redis.from_url(redis_url)
    latencies: list[float] = []
    done = 0
    last_at = 0.0
    print("ready", flush=True)
    while done < count:
        reply = client.xreadgroup("raw", "c1", {stream: ">"}, count=200, block=1000)
        for _, items in reply or ():
            now = time.time()
            ids = []
            for eid, fields in items:
                ids.append(eid)
                sent = float(json.loads(fields[DATA_FIELD.encode()])["t"])
                latencies.append((now - sent) * 1000)
            client.xack(stream, "raw", *ids)
            done += len(ids)
            last_at = now
    print(json.dumps({"latencies": latencies, "last_at": last_at}), flush=True)


async def run_raw(redis: Any, args: argparse.Namespace, *, count: int, rate: float, name: str) -> Result:
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await redis.xgroup_create(stream, "raw", id="0", mkstream=True)
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.pipeline", "--raw-consumer", stream, str(count)],
                            cwd=REPO, env={**os.environ, "REDIS_URL": args.redis_url}, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # ready
        bodies: list[tuple[str | None, str, str]] = [(None, stream, e.to_json()) for e in market_events(stream, count)]
        started_wall = time.time()
        # The same envelopes, each wrapped with its send time so that the consumer can measure latency.
        await publish(_Stamping(redis), bodies, rate, {})
        out, _ = await asyncio.to_thread(proc.communicate, timeout=args.timeout)
        data = json.loads(out.decode().strip().splitlines()[-1])
        seconds = data["last_at"] - started_wall
        return Result(name, count, seconds, data["latencies"])
    finally:
        if proc.poll() is None:
            proc.kill()
        await redis.delete(stream)


class _Stamping:
    """A redis client wrapper that puts the send time into every XADDed body (for the raw loop)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    @staticmethod
    def _stamp(fields: dict[str, str]) -> dict[str, str]:
        return {DATA_FIELD: json.dumps({"t": time.time(), "e": fields[DATA_FIELD]})}

    async def xadd(self, stream: str, fields: dict[str, str]) -> Any:
        return await self.redis.xadd(stream, self._stamp(fields))

    def pipeline(self, transaction: bool = False) -> Any:
        outer = self

        class _Pipe:
            async def __aenter__(self) -> _Pipe:
                self.pipe = await outer.redis.pipeline(transaction=transaction).__aenter__()
                return self

            async def __aexit__(self, *exc: object) -> None:
                await self.pipe.__aexit__(*exc)

            def xadd(self, stream: str, fields: dict[str, str]) -> None:
                self.pipe.xadd(stream, outer._stamp(fields))

            async def execute(self) -> Any:
                return await self.pipe.execute()

        return _Pipe()


# --- the run ------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


async def main_async(args: argparse.Namespace, console: Console) -> int:
    import redis.asyncio as aioredis

    from marketplace.adapters.embedded_redis import EmbeddedRedis

    workdir = Path(tempfile.mkdtemp(prefix="nvf-bench-"))
    embedded = None
    if not args.redis_url:
        embedded = EmbeddedRedis(workdir / "redis")
        args.redis_url = embedded.start()
    redis = aioredis.from_url(args.redis_url)
    results: list[Result] = []
    try:
        console.print(f"redis {args.redis_url.split('@')[-1]}, database "
                      f"{'PostgreSQL' if args.database_url else 'SQLite (file)'}, {args.events} events for "
                      f"throughput, {args.latency_rate:.0f}/s for {args.latency_seconds:.0f} s for latency, "
                      f"auto-clear {args.auto_clear_ms} ms")
        lat_count = int(args.latency_rate * args.latency_seconds)
        results.append(await run_raw(redis, args, count=args.events, rate=0, name="raw loop, max rate"))
        results.append(await run_raw(redis, args, count=lat_count, rate=args.latency_rate,
                                     name=f"raw loop, {args.latency_rate:.0f}/s"))
        results.append(await run_marketplace(redis, args, workdir, count=args.events, rate=0,
                                             name="marketplace, max rate"))
        results.append(await run_marketplace(redis, args, workdir, count=lat_count, rate=args.latency_rate,
                                             name=f"marketplace, {args.latency_rate:.0f}/s"))
    finally:
        await redis.aclose()
        if embedded is not None:
            embedded.stop()
        if args.keep:
            console.print(f"workers' logs and databases kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title="pipeline: publish -> intake -> book -> clearing -> match.proposed")
    for column in ("run", "events", "seconds", "events/s", "p50 ms", "p99 ms", "note"):
        table.add_column(column, justify="right" if column not in ("run", "note") else "left")
    for r in results:
        table.add_row(r.name, str(r.events), f"{r.seconds:.2f}", _fmt(r.rate), _fmt(r.pct(0.5)), _fmt(r.pct(0.99)),
                      r.note)
    console.print(table)
    raw, market = results[0], results[2]
    ratio = market.rate / raw.rate if raw.rate else 0.0
    lat = results[3]
    p99 = lat.pct(0.99)
    console.print(f"targets: >= 2000 events/s: {market.rate:,.0f} ({'met' if market.rate >= 2000 else 'missed'}); "
                  f"p99 < 250 ms at {args.latency_rate:.0f}/s: {_fmt(p99)} ms "
                  f"({'met' if p99 is not None and p99 < 250 else 'missed'}); "
                  f">= 1/3 of raw: {ratio:.3f} ({'met' if ratio >= 1 / 3 else 'missed'})")
    if lat.latencies_ms:
        console.print(f"latency mean {statistics.fmean(lat.latencies_ms):.0f} ms over {len(lat.latencies_ms)} requests")
    print(f"ratio marketplace/raw: {ratio:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8000, help="events for the throughput runs")
    parser.add_argument("--latency-rate", type=float, default=500.0, help="events per second for the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--auto-clear-ms", type=int, default=int(os.environ.get("NVF_AUTO_CLEAR_MS") or 20))
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting for matches after this")
    parser.add_argument("--log-level", default="WARNING", help="the workers' log level (their logs: --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the workers' logs and databases")
    parser.add_argument("--raw-consumer", nargs=2, metavar=("STREAM", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.redis_url = os.environ.get("REDIS_URL") or None
    args.database_url = os.environ.get("DATABASE_URL") or None
    if args.raw_consumer:
        raw_consumer(args.redis_url, args.raw_consumer[0], int(args.raw_consumer[1]))
        return 0
    return asyncio.run(main_async(args, Console()))


if __name__ == "__main__":
    sys.exit(main())
