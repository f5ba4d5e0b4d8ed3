"""Waiting for the marketplace to settle, and reading back what it decided."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import ResponseError
from sqlmodel import col, func, select

from marketplace.adapters.database import Database
from marketplace.adapters.orm import ClearingRoundRow, OutboxRow

SETTLE_FIRST_PAUSE_S = 0.01
SETTLE_MAX_PAUSE_S = 0.1
SETTLE_CONFIRM_S = 0.02


async def stream_backlog(redis: Any, pairs: Iterable[tuple[str, str]]) -> int:
    """Entries not yet delivered or not yet acknowledged, over the given (stream, group) pairs.

    Two pipelined round trips whatever the number of streams (the demo asks this often, over a
    hundred of them): every stream's groups, then the newest entry of each that has the group."""
    pairs = list(pairs)
    async with redis.pipeline(transaction=False) as pipe:
        for stream, _ in pairs:
            pipe.xinfo_groups(stream)
        infos = await pipe.execute(raise_on_error=False)
    found: list[tuple[str, dict[Any, Any]]] = []
    for (stream, group), groups in zip(pairs, infos, strict=True):
        if isinstance(groups, ResponseError):
            # A stream nobody has written to yet holds nothing; any other error is an error.
            if "no such key" in str(groups).lower():
                continue
            raise groups
        for info in groups:
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == group:
                found.append((stream, info))
    if not found:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for stream, _ in found:
            pipe.xrevrange(stream, count=1)
        newest = await pipe.execute()
    return sum(int(info.get("pending", 0) or 0) + _undelivered(info, last)
               for (_, info), last in zip(found, newest, strict=True))


def _undelivered(info: dict[Any, Any], newest: list[Any]) -> int:
    """Entries after the group's last delivered id. Whether there are any comes from the stream's
    own newest id: Redis 6.2 (the embedded one) reports no lag, and Redis 7's lag is nil, or even
    counts entries that are gone, once entries were deleted or trimmed. How many is the lag where
    it is given, else at least one."""
    last = info.get("last-delivered-id", info.get(b"last-delivered-id", b"0-0"))
    if not newest or _entry_id(newest[0][0]) <= _entry_id(last):
        return 0
    lag = info.get("lag", info.get(b"lag"))
    return max(1, int(lag or 0))


def _entry_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


async def wait_until_consumed(redis: Any, pairs: list[tuple[str, str]], *, timeout_s: float = 60.0) -> bool:
    """Until every group of `pairs` has read and acknowledged everything; False on timeout.

    The parties' ingress streams are apart, so nothing orders one party's entries against
    another's: a clearing round is requested once intake has taken in what the regions published."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if await stream_backlog(redis, pairs) == 0 else 0
        if quiet >= 2:
            return True
        await asyncio.sleep(0.1)
    return False


async def unpublished(db: Database) -> int:
    async with db.session() as session:
        query = select(func.count()).select_from(OutboxRow).where(col(OutboxRow.published_at).is_(None))
        return int((await session.exec(query)).one())


async def rounds_done(db: Database, round_ids: Iterable[str]) -> int:
    ids = list(round_ids)
    async with db.session() as session:
        query = select(func.count()).select_from(ClearingRoundRow).where(col(ClearingRoundRow.round_id).in_(ids))
        return int((await session.exec(query)).one())


async def wait_until_settled(redis: Any, db: Database, pairs: list[tuple[str, str]], round_ids: list[str],
                             *, timeout_s: float = 300.0,
                             on_tick: Callable[[int, int], None] | None = None) -> None:
    """Until every round is done, the outbox is empty and every group has read and acked everything."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    pause = SETTLE_FIRST_PAUSE_S
    while time.monotonic() < deadline:
        done = await rounds_done(db, round_ids)
        backlog = await stream_backlog(redis, pairs) + await unpublished(db)
        if on_tick:
            on_tick(done, backlog)
        # Settled twice in a row: a relay may be between its commit and its XADD.
        quiet = quiet + 1 if done == len(round_ids) and backlog == 0 else 0
        if quiet >= 2:
            return
        # The demo's play settles after every step, most of them a command or two: look again soon,
        # and less often the longer the work goes on (each look asks every stream and the outbox).
        await asyncio.sleep(SETTLE_CONFIRM_S if quiet else pause)
        pause = min(SETTLE_MAX_PAUSE_S, pause * 2)
    raise TimeoutError(f"marketplace did not settle within {timeout_s:.0f} s "
                       f"({await rounds_done(db, round_ids)}/{len(round_ids)} rounds done)")
