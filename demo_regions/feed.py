"""The regions' view of their cases, read from their own feeds (`to:<R>:cases`), never from the
marketplace's tables.

One reader per region blocks on its feed (XREAD BLOCK, as that region's own Redis user); a party
waiting for a case to reach a state waits for the next entry, not on a timer. A case's entries
come on the home region's feed and, while its match stands, on the provider's too: the newest
version of a case wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog

from demo_regions.bus import Connections, keep_reading, text_id
from events import CaseStateChanged, Streams
from events.envelope import DATA_FIELD, decode_body, parse_envelope

log = structlog.get_logger(__name__)


@dataclass
class CaseView:
    """A case as its regions know it: its state, version and the newest of each detail."""

    case_ref: str
    state: str
    version: int
    details: dict[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str:
        value = self.details.get(name)
        if value is None:
            raise KeyError(f"{self.case_ref}: its feed told no {name}")
        return str(value)

    def moment(self, name: str) -> datetime | None:
        value = self.details.get(name)
        return datetime.fromisoformat(str(value)) if value is not None else None

    def day(self, name: str) -> date | None:
        value = self.details.get(name)
        return date.fromisoformat(str(value)) if value is not None else None

    def amount(self, name: str) -> Decimal | None:
        value = self.details.get(name)
        return Decimal(str(value)) if value is not None else None


class CaseFeeds:
    """Every region's feed, followed as that region."""

    BLOCK_MS = 1000  # how long a read waits before it looks at `stopping` again

    def __init__(self, connections: Connections, streams: Streams, region_codes: Iterable[str],
                 start_id: str) -> None:
        self.connections = connections
        self.streams = streams
        self.regions = list(region_codes)
        self._last = dict.fromkeys(self.regions, start_id)
        self.cases: dict[str, CaseView] = {}
        # Once set (`follow_only`), the cases whose entries are read; the others' are skipped.
        self.following: frozenset[str] | None = None
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Read what the feeds hold now, then follow them."""
        for region in self.regions:
            while await self._read(region, block=None):
                pass
        self._tasks = [asyncio.create_task(self._follow(r), name=f"demo-feed-{r}") for r in self.regions]

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=self.BLOCK_MS / 1000 + 5)

    async def _follow(self, region: str) -> None:
        await keep_reading(lambda: self._read(region, block=self.BLOCK_MS), self._stopping,
                           "demo_regions.feed_failed", region=region)

    async def _read(self, region: str, *, block: int | None) -> int:
        stream = self.streams.case_feed(region)
        found = await self.connections.client(region).xread({stream: self._last[region]}, count=1000, block=block)
        entries = [e for _, batch in found or () for e in batch]
        if not entries:
            return 0
        for _, fields in entries:
            data = decode_body(fields[DATA_FIELD.encode()])
            if self.following is not None and _case_ref(data) not in self.following:
                continue  # a case the play does not carry: not worth a full parse
            _, payload = parse_envelope(data)
            if isinstance(payload, CaseStateChanged):
                self._take(payload)
        self._last[region] = text_id(entries[-1][0])
        async with self._changed:
            self._changed.notify_all()
        return len(entries)

    def _take(self, event: CaseStateChanged) -> None:
        known = self.cases.get(event.case_ref)
        if known is not None and known.version >= event.version:
            return  # told already (by the case's other region)
        details = {**known.details, **event.details} if known is not None else dict(event.details)
        self.cases[event.case_ref] = CaseView(event.case_ref, event.to_state, event.version, details)

    def follow_only(self, case_refs: Iterable[str]) -> None:
        """From now on keep up with these cases only (the play's sample)."""
        self.following = frozenset(case_refs)

    def state(self, case_ref: str) -> str | None:
        case = self.cases.get(case_ref)
        return case.state if case is not None else None

    def view(self, case_ref: str) -> CaseView:
        return self.cases[case_ref]

    async def wait_for(self, expected: dict[str, set[str]], *, timeout_s: float) -> dict[str, str | None]:
        """Until every case is in one of its expected states; returns the states. It gives up (and goes
        on) only after `timeout_s` without progress: a busy machine is slow, not stuck, and a fixed
        limit would leave cases behind whose every later step then fails."""
        started = time.monotonic()
        deadline = started + timeout_s
        best = -1
        while True:
            states = {ref: self.state(ref) for ref in expected}
            reached = sum(1 for ref, wanted in expected.items() if states[ref] in wanted)
            if reached > best:
                best, deadline = reached, time.monotonic() + timeout_s
            if reached == len(expected) or time.monotonic() > deadline:
                missing = {ref: states[ref] for ref, wanted in expected.items() if states[ref] not in wanted}
                if missing:
                    log.warning("demo_regions.cases_behind", count=len(missing), example=next(iter(missing.items())))
                return states
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, deadline - time.monotonic()))


def _case_ref(data: Any) -> object:
    payload = data.get("payload") if isinstance(data, dict) else None
    return payload.get("case_ref") if isinstance(payload, dict) else None
