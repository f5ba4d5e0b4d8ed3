"""The marketplace's intake and matcher work done bare: the pipeline benchmark's comparison.

Two processes, as many as the marketplace runs (`nvf run --role intake` and `--role matcher`):

- the intake reads the regions' ingress streams with XREADGROUP in a consumer group, writes per
  event the rows the marketplace's intake writes per event of that type (counted by the benchmark's
  calibration), publishes as many outgoing entries as the marketplace's intake stages (the first
  onto the care area's book stream, carrying the event), and acks;
- the matcher does the same on the book streams with the matcher's counts, placing requests first
  come first served from memory (capacity per care area, price ceilings honoured) and publishing a
  `match.proposed` for each placed request on the matches stream.

"The same rows" means the same number per event into the marketplace's own tables (created in this
run's own schema or SQLite file by `Database.create_all`, so the same columns, keys and indexes),
appended per batch with the driver's fastest path (asyncpg COPY on PostgreSQL, executemany on
SQLite), and the counted updates as one UPDATE per table per batch, all in one transaction per
batch; then the outgoing entries (pipelined XADDs) and the acks. Fractional counts (a clearing
round's row shared by a batch's events) are rounded per event by a hash of its id, so that both
processes agree which rows exist: the matcher updates rows the intake wrote for the same event.

`python -m benchmarks.same_work CONFIG.json intake|matcher`; prints `ready` and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, String, Table, TypeDecorator, delete, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

DATA_FIELD = "__data__"
# Rows per event: role -> event type -> "insert:table" | "update:table" | "delete:table" -> rows.
Rates = dict[str, dict[str, dict[str, float]]]
ROLES = ("intake", "matcher")
_ID_BASE = {"intake": 1, "matcher": 1_000_000_000}  # the two processes' integer keys never meet (int4)


def rows_for(rate: float, event_id: str, salt: str) -> int:
    """`rate` rounded for this event, the same in both processes: up with probability its fraction."""
    whole = int(rate)
    digest = hashlib.blake2b(f"{event_id}:{salt}".encode(), digest_size=8).digest()
    return whole + (1 if int.from_bytes(digest, "big") / 2**64 < rate - whole else 0)


def _python_type(column: Column[Any]) -> type:
    kind = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, String):  # SQLModel's AutoString (a decorated String) says `object`
        return str
    if isinstance(kind, JSON):
        return dict
    try:
        return kind.python_type
    except NotImplementedError:
        return str


@dataclass
class Rows:
    """Builds rows of one table as tuples in its column order; remembers the keys written."""

    table: Table
    role: str
    next_int: int
    pool: deque[tuple[Any, ...]] = field(default_factory=lambda: deque(maxlen=20_000))

    def __post_init__(self) -> None:
        self.columns = list(self.table.columns)
        self.names = [c.name for c in self.columns]
        self.pk = list(self.table.primary_key.columns)
        # Per column: name, kind of value, longest text it takes, whether its timestamps carry a zone.
        self.plan = [(c.name, _python_type(c), getattr(c.type, "length", None),
                      bool(getattr(c.type, "timezone", False))) for c in self.columns]
        self.pk_at = [self.names.index(c.name) for c in self.pk]

    def key(self, role: str, event_id: str, i: int) -> str:
        # Unique per row and short enough for the 36-character id columns (an event id's hex is 32).
        return f"{role[0]}{i}{event_id.replace('-', '')}"

    def pk_of_key(self, key: str) -> tuple[Any, ...] | None:
        """The primary key the row with this text key has, if it can be known without reading it."""
        if any(t is not str for t in (_python_type(c) for c in self.pk)):
            return None
        return tuple(key for _ in self.pk)

    def make(self, key: str, body: str, payload_json: str, now: datetime, today: date,
             for_copy: bool) -> tuple[Any, ...]:
        values: list[Any] = []
        for name, kind, length, aware in self.plan:
            value: Any
            if kind is str:
                value = (body if name in ("body", "envelope") else key)[:length]
            elif kind is bool:
                value = False
            elif kind is int:
                value = self.next_int
                self.next_int += 1
            elif kind is float:
                value = 1.0
            elif kind is Decimal:
                value = Decimal(1)
            elif kind is datetime:
                value = now if aware else now.replace(tzinfo=None)
            elif kind is date:
                value = today
            elif kind is dict:
                value = payload_json if for_copy else json.loads(payload_json)
            elif kind is bytes:
                value = body.encode()
            else:
                value = key
            values.append(value)
        row = tuple(values)
        self.pool.append(tuple(row[i] for i in self.pk_at))
        return row


class SameWork:
    def __init__(self, config: dict[str, Any], role: str) -> None:
        from sqlmodel import SQLModel

        from marketplace.adapters.database import Database  # registers every table on SQLModel's metadata

        self.role = role
        self.other = "matcher" if role == "intake" else "intake"
        self.config = config
        self.rates: Rates = config["rates"]
        self.prefix: str = config["prefix"]
        self.batch: int = config["batch_size"]
        self.db = Database(config["database_url"], schema=config["schema"])
        self.tables = {t.name: t for t in SQLModel.metadata.sorted_tables}
        self.rows: dict[str, Rows] = {}
        self.streams: list[str] = config["streams"][role]
        self.group = f"same-work-{role}"
        self.capacity: dict[str, int] = {}
        self.cheapest: dict[str, float] = {}
        self.waiting: dict[str, list[dict[str, Any]]] = {}
        self.stopping = asyncio.Event()

    def rows_of(self, name: str) -> Rows:
        if name not in self.rows:
            self.rows[name] = Rows(self.tables[name], self.role, _ID_BASE[self.role])
        return self.rows[name]

    async def run(self) -> None:
        import redis.asyncio as aioredis

        redis: Any = aioredis.from_url(self.config["redis_url"])
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        print("ready", flush=True)
        try:
            while not self.stopping.is_set():
                reply = await redis.xreadgroup(self.group, self.role, dict.fromkeys(self.streams, ">"),
                                               count=self.batch, block=50)
                if reply:
                    await self.handle(redis, reply)
        finally:
            await redis.aclose()
            await self.db.dispose()

    async def handle(self, redis: Any, reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]) -> None:
        now = datetime.now(UTC)
        today = now.date()
        pg = not self.db.is_sqlite
        inserts: dict[str, list[tuple[Any, ...]]] = {}
        changes: dict[tuple[str, str], int] = {}
        outgoing: list[tuple[str, str]] = []
        acks: dict[bytes, list[bytes]] = {}
        for stream, items in reply:
            acks[stream] = [eid for eid, _ in items]
            for _eid, fields in items:
                body = fields[DATA_FIELD.encode()].decode()
                envelope = json.loads(body)
                kind: str = envelope["type"]
                event_id: str = envelope["event_id"]
                payload = envelope["payload"]
                payload_json = json.dumps(payload)
                for what, rate in self.rates[self.role].get(kind, {}).items():
                    verb, table = what.split(":", 1)
                    n = rows_for(rate, event_id, what + self.role)
                    if verb == "insert":
                        maker = self.rows_of(table)
                        inserts.setdefault(table, []).extend(
                            maker.make(maker.key(self.role, event_id, i), body, payload_json, now, today, pg)
                            for i in range(n))
                    elif n:
                        changes[verb, table] = changes.get((verb, table), 0) + n
                # The rows the intake wrote for this event (committed before it reached the book):
                # the matcher may update them.
                for what, rate in self.rates[self.other].get(kind, {}).items() if self.role == "matcher" else ():
                    verb, table = what.split(":", 1)
                    if verb == "insert":
                        maker = self.rows_of(table)
                        for i in range(rows_for(rate, event_id, what + self.other)):
                            pk = maker.pk_of_key(maker.key(self.other, event_id, i))
                            if pk is not None:
                                maker.pool.append(pk)
                outgoing += self.publish(kind, payload, body, event_id)
        async with self.db.engine.begin() as conn:
            for table, rows in inserts.items():
                if rows:
                    await self.append(conn, table, rows, pg)
            for (verb, table), n in changes.items():
                await self.change(conn, verb, table, n)
        if outgoing:
            async with redis.pipeline(transaction=False) as pipe:
                for stream_name, data in outgoing:
                    pipe.xadd(stream_name, {DATA_FIELD: data}, maxlen=100_000, approximate=True)
                await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for stream, ids in acks.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()

    def publish(self, kind: str, payload: dict[str, Any], body: str, event_id: str) -> list[tuple[str, str]]:
        """The entries this event sends on: as many as the marketplace's outbox rows for it (more
        only if an offer places several waiting requests at once)."""
        n = rows_for(self.rates[self.role].get(kind, {}).get("insert:outbox", 0.0), event_id, "outbox" + self.role)
        first: list[tuple[str, str]] = []
        area = payload.get("care_area", "")
        if self.role == "intake" and kind in ("offer.published", "request.published"):
            first = [(f"{self.prefix}:book:{area}", body)]
        elif self.role == "matcher" and kind == "offer.published":
            self.capacity[area] = self.capacity.get(area, 0) + int(payload["capacity"])
            self.cheapest[area] = min(self.cheapest.get(area, float("inf")), float(payload["price_sek"]))
            first = self.place(area)
        elif self.role == "matcher" and kind == "request.published":
            self.waiting.setdefault(area, []).append(payload)
            first = self.place(area)
        return first + [(f"{self.prefix}:same-work:{self.role}", body)] * max(0, n - len(first))

    def place(self, area: str) -> list[tuple[str, str]]:
        """First come first served from the care area's waiting requests, in memory."""
        placed: list[tuple[str, str]] = []
        kept: list[dict[str, Any]] = []
        for request in self.waiting.get(area, []):
            patients = len(request["patients"])
            ceiling = request.get("max_price_sek")
            if self.capacity.get(area, 0) >= patients and (ceiling is None or ceiling >= self.cheapest[area]):
                self.capacity[area] -= patients
                match = {"type": "match.proposed", "payload": {"request_id": request["request_id"], "care_area": area}}
                placed.append((f"{self.prefix}:matches", json.dumps(match)))
            else:
                kept.append(request)
        self.waiting[area] = kept
        return placed

    async def append(self, conn: AsyncConnection, table: str, rows: list[tuple[Any, ...]], pg: bool) -> None:
        maker = self.rows[table]
        if pg:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                table, records=rows, columns=maker.names, schema_name=self.db.schema)
        else:
            await conn.execute(maker.table.insert(), [dict(zip(maker.names, r, strict=True)) for r in rows])

    async def change(self, conn: AsyncConnection, verb: str, table: str, n: int) -> None:
        """`n` of the table's most recently written rows updated (or deleted) in one statement."""
        maker = self.rows_of(table)
        keys = list(maker.pool)[-n:]
        if not keys:
            return
        t = maker.table
        where = tuple_(*maker.pk).in_(keys) if len(maker.pk) > 1 else maker.pk[0].in_([k[0] for k in keys])
        if verb == "delete":
            await conn.execute(delete(t).where(where))
            for _ in keys:
                maker.pool.pop()
            return
        target = next((c for c in t.columns if not c.primary_key), maker.pk[0])
        await conn.execute(update(t).where(where).values({target.name: target}))


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(SameWork(config, sys.argv[2]).run())


if __name__ == "__main__":
    main()
