"""Case timelines: every case event appended once, in order, to its case's hash chain.

Two writers share a timeline: the lifecycle (its own events, in the transaction that decided them)
and the timeline worker (what the bus says about a case: a patient not placed, a message sent, a
receipt). Both append through `TimelineAppender`; the unique (case_ref, version) key makes a
concurrent append fail its transaction, which the worker then runs again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import CaseStateChanged, Envelope, MatchProposed, Payload
from marketplace.adapters.appends import append
from marketplace.adapters.orm import TimelineHeadRow, TimelineRow
from marketplace.lifecycle.timeline import (
    GENESIS_HASH,
    Head,
    TimelineEntry,
    canonical_json,
    chain_hash,
    checkpoint,
)
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events

CONSUMER = "timeline"
TIMELINE = TimelineRow.__table__  # type: ignore[attr-defined]
# Mirrors of lifecycle events, which the lifecycle writes to the timeline itself.
_MIRRORS = (CaseStateChanged, MatchProposed)


class TimelineAppender:
    """Appends to the timelines of some cases within one transaction, knowing each one's head."""

    def __init__(self, session: AsyncSession, key: bytes | None = None) -> None:
        self.session = session
        self.key = key
        self._heads: dict[str, tuple[int, str]] = {}
        self._head_rows: dict[str, TimelineHeadRow] = {}
        self._present: set[tuple[str, str]] = set()
        self._loaded: set[str] = set()

    async def load(self, case_refs: Iterable[str]) -> list[TimelineRow]:
        """Read the timelines of `case_refs` (once per case); returns the rows read."""
        refs = set(case_refs) - self._loaded
        if not refs:
            return []
        rows = list((await self.session.exec(
            select(TimelineRow).where(col(TimelineRow.case_ref).in_(refs))
            .order_by(col(TimelineRow.case_ref), col(TimelineRow.version)))).all())
        for row in rows:
            self._present.add((row.case_ref, row.event_id))
            self._heads[row.case_ref] = (row.version, row.hash)
        for head in (await self.session.exec(
                select(TimelineHeadRow).where(col(TimelineHeadRow.case_ref).in_(refs)))).all():
            self._head_rows[head.case_ref] = head
        self._loaded |= refs
        return rows

    def add(self, case_ref: str, event_id: uuid.UUID | str, event_type: str, occurred_at: datetime,
            payload: Mapping[str, Any]) -> int | None:
        """Append one entry (the case must be loaded); returns its version, None when that event
        is already there."""
        assert case_ref in self._loaded, f"timeline of {case_ref} not loaded"
        key = (case_ref, str(event_id))
        if key in self._present:
            return None
        self._present.add(key)
        version, prev_hash = self._heads.get(case_ref, (0, GENESIS_HASH))
        version += 1
        body = dict(json.loads(canonical_json(payload)))  # stored exactly as hashed
        digest = chain_hash(prev_hash, case_ref=case_ref, version=version, event_id=event_id,
                            event_type=event_type, occurred_at=occurred_at, payload=body)
        append(self.session, TIMELINE, {"case_ref": case_ref, "version": version, "event_id": str(event_id),
                                        "event_type": event_type, "occurred_at": occurred_at, "payload": body,
                                        "prev_hash": prev_hash, "hash": digest})
        self._heads[case_ref] = (version, digest)
        self._record_head(case_ref, version, digest)
        return version

    def _record_head(self, case_ref: str, version: int, digest: str) -> None:
        mac = checkpoint(self.key, case_ref, version, digest) if self.key is not None else None
        head = self._head_rows.get(case_ref)
        if head is None:
            head = self._head_rows[case_ref] = TimelineHeadRow(case_ref=case_ref, version=version, hash=digest,
                                                                checkpoint=mac)
        else:
            head.version, head.hash, head.checkpoint, head.updated_at = version, digest, mac, datetime.now(UTC)
        self.session.add(head)


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    # No inbox here: an event already on its case's timeline is skipped by the appender.
    await append_events(session, trusted_events(items), key=ctx.timeline_key)


async def append_events(session: AsyncSession, items: Sequence[tuple[Envelope, Payload]],
                        key: bytes | None = None) -> int:
    """Append the bus events about a case among `items` (not the lifecycle's own mirrors)."""
    case_items = [(env, p) for env, p in items
                  if isinstance(getattr(p, "case_ref", None), str) and not isinstance(p, _MIRRORS)]
    if not case_items:
        return 0
    appender = TimelineAppender(session, key=key)
    await appender.load(p.case_ref for _, p in case_items)  # type: ignore[attr-defined]
    added = 0
    for envelope, payload in case_items:
        version = appender.add(payload.case_ref, envelope.event_id, envelope.type,  # type: ignore[attr-defined]
                               envelope.occurred_at, envelope.payload)
        added += version is not None
    return added


async def load_head(session: AsyncSession, case_ref: str) -> Head | None:
    row = await session.get(TimelineHeadRow, case_ref)
    return None if row is None else Head(row.version, row.hash, row.checkpoint)


async def load_timeline(session: AsyncSession, case_ref: str) -> list[TimelineEntry]:
    rows = (await session.exec(
        select(TimelineRow).where(TimelineRow.case_ref == case_ref).order_by(col(TimelineRow.version)))).all()
    return [to_entry(r) for r in rows]


def to_entry(row: TimelineRow) -> TimelineEntry:
    occurred = row.occurred_at
    if occurred.tzinfo is None:
        # SQLite keeps no zone; every timestamp we write is UTC.
        occurred = occurred.replace(tzinfo=UTC)
    return TimelineEntry(case_ref=row.case_ref, version=row.version, event_id=uuid.UUID(row.event_id),
                         event_type=row.event_type, occurred_at=occurred, payload=row.payload,
                         prev_hash=row.prev_hash, hash=row.hash)
