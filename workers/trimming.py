"""Bounding stream length without ever dropping an entry some group still needs.

A stream may be trimmed below the oldest entry that any of its groups has not acknowledged: the
first pending entry of a group, or, when nothing is pending, the last entry delivered to it
(everything after that is not yet read). `XTRIM MINID ~` then removes whole nodes below that id
only. A stream is trimmed only when every group expected on it exists (a role that has not
started yet must still find its backlog), and a stream without groups (rejections, dead letters,
read by people and regions) is never trimmed that way.

The streams the regions read themselves, with XREAD from where they left off (their answers,
case feeds and secure-message inboxes), have no group to tell what was read: they are trimmed by
age instead (`trim_older_than`), below the retention the deployment sets. A region away longer
than that reads its cases' state from the API; a message it never received is sent again by the
courier (no receipt came) until it escalates.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import structlog
from redis.exceptions import ResponseError

from events import Streams
from matchers.reference import regions

log = structlog.get_logger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def safe_floor(redis: Any, stream: str, groups: Iterable[str]) -> str | None:
    """The lowest id any expected group still needs, or None when the stream must not be trimmed."""
    try:
        infos = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return None  # no stream yet: nothing to trim
        raise
    by_name = {_text(info["name"]): info for info in infos}
    floors = []
    for group in set(groups):
        info = by_name.get(group)
        if info is None:
            return None
        pending_min = (await redis.xpending(stream, group))["min"] if int(info.get("pending") or 0) else None
        # Acknowledged between the two reads: the last delivered id, as read first, is still a safe floor.
        floors.append(_text(pending_min if pending_min is not None else info["last-delivered-id"]))
    if not floors:
        return None
    return min(floors, key=_key)


async def trim_acknowledged(redis: Any, pairs: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Trim each stream of `pairs` below what all its groups have acknowledged; entries removed per stream."""
    groups: dict[str, list[str]] = {}
    for stream, group in pairs:
        groups.setdefault(stream, []).append(group)
    removed = {}
    for stream, names in groups.items():
        floor = await safe_floor(redis, stream, names)
        if floor is None or floor == "0-0":
            continue
        removed[stream] = int(await redis.xtrim(stream, minid=floor, approximate=True))
    if any(removed.values()):
        log.info("streams.trimmed", removed={k: v for k, v in removed.items() if v})
    return removed


def region_read_streams(streams: Streams) -> list[str]:
    """What each region reads itself: its answers, its case feed, its organisation's inbox."""
    return [name for code, region in sorted(regions().items())
            for name in (streams.outgoing(code), streams.case_feed(code), streams.inbox(region.org_number))]


async def trim_older_than(redis: Any, streams: Iterable[str], retention_s: float,
                          now: float | None = None) -> dict[str, int]:
    """Trim each of `streams` below the entries of the last `retention_s` seconds (entry ids are the
    server's milliseconds); entries removed per stream."""
    cutoff_ms = int(((time.time() if now is None else now) - retention_s) * 1000)
    if cutoff_ms <= 0:
        return {}
    names = list(streams)
    async with redis.pipeline(transaction=False) as pipe:
        for stream in names:
            pipe.xtrim(stream, minid=f"{cutoff_ms}-0", approximate=False)
        counts = await pipe.execute()
    removed = {stream: int(count) for stream, count in zip(names, counts, strict=True)}
    if any(removed.values()):
        log.info("streams.trimmed_by_age", retention_s=retention_s, removed={k: v for k, v in removed.items() if v})
    return removed
