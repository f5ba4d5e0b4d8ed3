"""Case timelines: each case's event stream (its lifecycle events) and, beside it, its annotations.

Two writers, two chains. The lifecycle appends its own events to the case's stream, in the
transaction that decided them, at the aggregate's version (`StreamConflict` if the stream moved
since it was read; the unique (case_ref, version) key catches a writer in another transaction).
The timeline worker projects what the bus says about a case (a patient not placed, a message
sent, a receipt) into the case's annotations: a read model in a chain of its own, so it never
moves the stream's version; the bus event's id is unique there, so a redelivery adds nothing.
Both write through `ChainAppender`, which keeps each chain's head and keyed checkpoint.
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
from marketplace.adapters.orm import CaseAnnotationRow, CaseEventRow, ChainHeadRow
from marketplace.lifecycle.timeline import (
    GENESIS_HASH,
    Chain,
    Head,
    TimelineEntry,
    canonical_json,
    chain_hash,
    checkpoint,
    merge,
    next_version,
)
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events

CONSUMER = "timeline"
CASE_EVENTS = CaseEventRow.__table__  # type: ignore[attr-defined]
CASE_ANNOTATIONS = CaseAnnotationRow.__table__  # type: ignore[attr-defined]
_ROWS: dict[Chain, type[CaseEventRow] | type[CaseAnnotationRow]] = {
    Chain.EVENTS: CaseEventRow, Chain.ANNOTATIONS: CaseAnnotationRow}
# Mirrors of lifecycle events, which are in the case's event stream already.
_MIRRORS = (CaseStateChanged, MatchProposed)

Row = CaseEventRow | CaseAnnotationRow


class ChainAppender:
    """Appends to one kind of chain (`chain`) of some cases within one transaction, knowing each
    one's head."""

    def __init__(self, session: AsyncSession, chain: Chain, key: bytes | None = None) -> None:
        self.session = session
        self.chain = chain
        self.key = key
        self._row = _ROWS[chain]
        self._table = self._row.__table__  # type: ignore[union-attr]
        self._heads: dict[str, tuple[int, str]] = {}
        self._head_rows: dict[str, ChainHeadRow] = {}
        self._present: set[str] = set()
        self._loaded: set[str] = set()

    async def load(self, case_refs: Iterable[str]) -> list[Row]:
        """Read the chains of `case_refs` (once per case); returns the rows read, in order."""
        refs = set(case_refs) - self._loaded
        if not refs:
            return []
        row = self._row
        rows: list[Row] = list((await self.session.exec(
            select(row).where(col(row.case_ref).in_(refs))  # type: ignore[arg-type]
            .order_by(col(row.case_ref), col(_place(row))))).all())
        for r in rows:
            self._present.add(r.event_id)
            self._heads[r.case_ref] = (_version(r), r.hash)
        for head in (await self.session.exec(
                select(ChainHeadRow).where(col(ChainHeadRow.case_ref).in_(refs),
                                           ChainHeadRow.chain == str(self.chain)))).all():
            self._head_rows[head.case_ref] = head
        self._loaded |= refs
        return rows

    def add(self, case_ref: str, event_id: uuid.UUID | str, event_type: str, occurred_at: datetime,
            payload: Mapping[str, Any], version: int | None = None) -> int | None:
        """Append one entry (the case must be loaded); returns its version, None when that event is
        there already. `version`, when given, is the one the writer expects (the aggregate's after
        its event): `StreamConflict` when the chain's head is not just before it."""
        assert case_ref in self._loaded, f"timeline of {case_ref} not loaded"
        if str(event_id) in self._present:
            return None
        head_version, prev_hash = self._heads.get(case_ref, (0, GENESIS_HASH))
        version = next_version(case_ref, head_version, version)
        self._present.add(str(event_id))
        body = dict(json.loads(canonical_json(payload)))  # stored exactly as hashed
        digest = chain_hash(prev_hash, case_ref=case_ref, version=version, event_id=event_id,
                            event_type=event_type, occurred_at=occurred_at, payload=body, chain=self.chain)
        place = "version" if self.chain is Chain.EVENTS else "position"
        append(self.session, self._table, {"case_ref": case_ref, place: version, "event_id": str(event_id),
                                           "event_type": event_type, "occurred_at": occurred_at, "payload": body,
                                           "prev_hash": prev_hash, "hash": digest})
        self._heads[case_ref] = (version, digest)
        self._record_head(case_ref, version, digest)
        return version

    def _record_head(self, case_ref: str, version: int, digest: str) -> None:
        mac = checkpoint(self.key, case_ref, version, digest, self.chain) if self.key is not None else None
        head = self._head_rows.get(case_ref)
        if head is None:
            head = self._head_rows[case_ref] = ChainHeadRow(case_ref=case_ref, chain=str(self.chain), version=version,
                                                            hash=digest, checkpoint=mac)
        else:
            head.version, head.hash, head.checkpoint, head.updated_at = version, digest, mac, datetime.now(UTC)
        self.session.add(head)


def _place(row: type[Row]) -> Any:
    return row.version if row is CaseEventRow else row.position  # type: ignore[union-attr]


def _version(row: Row) -> int:
    return row.version if isinstance(row, CaseEventRow) else row.position


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    # No inbox here: an event already among its case's annotations is skipped by the appender.
    await append_events(session, trusted_events(items), key=ctx.timeline_key)


async def append_events(session: AsyncSession, items: Sequence[tuple[Envelope, Payload]],
                        key: bytes | None = None) -> int:
    """Annotate the cases the bus events among `items` are about (not the lifecycle's own mirrors,
    whose events are in the cases' streams)."""
    case_items = [(env, p) for env, p in items
                  if isinstance(getattr(p, "case_ref", None), str) and not isinstance(p, _MIRRORS)]
    if not case_items:
        return 0
    appender = ChainAppender(session, Chain.ANNOTATIONS, key=key)
    await appender.load(p.case_ref for _, p in case_items)  # type: ignore[attr-defined]
    added = 0
    for envelope, payload in case_items:
        version = appender.add(payload.case_ref, envelope.event_id, envelope.type,  # type: ignore[attr-defined]
                               envelope.occurred_at, envelope.payload)
        added += version is not None
    return added


async def load_heads(session: AsyncSession, case_ref: str) -> dict[Chain, Head]:
    rows = (await session.exec(select(ChainHeadRow).where(ChainHeadRow.case_ref == case_ref))).all()
    return {Chain(r.chain): Head(r.version, r.hash, r.checkpoint) for r in rows}


async def load_head(session: AsyncSession, case_ref: str, chain: Chain = Chain.EVENTS) -> Head | None:
    return (await load_heads(session, case_ref)).get(chain)


async def load_events(session: AsyncSession, case_ref: str) -> list[TimelineEntry]:
    """The case's event stream, by version."""
    rows = (await session.exec(select(CaseEventRow).where(CaseEventRow.case_ref == case_ref)
                               .order_by(col(CaseEventRow.version)))).all()
    return [to_entry(r) for r in rows]


async def load_annotations(session: AsyncSession, case_ref: str) -> list[TimelineEntry]:
    """What the bus said about the case, in the order it was projected."""
    rows = (await session.exec(select(CaseAnnotationRow).where(CaseAnnotationRow.case_ref == case_ref)
                               .order_by(col(CaseAnnotationRow.position)))).all()
    return [to_entry(r) for r in rows]


async def load_timeline(session: AsyncSession, case_ref: str) -> list[TimelineEntry]:
    """The case's event stream and its annotations merged by time, each labelled with its chain."""
    return merge(await load_events(session, case_ref), await load_annotations(session, case_ref))


def to_entry(row: Row) -> TimelineEntry:
    occurred = row.occurred_at
    if occurred.tzinfo is None:
        # SQLite keeps no zone; every timestamp we write is UTC.
        occurred = occurred.replace(tzinfo=UTC)
    chain = Chain.EVENTS if isinstance(row, CaseEventRow) else Chain.ANNOTATIONS
    return TimelineEntry(case_ref=row.case_ref, version=_version(row), event_id=uuid.UUID(row.event_id),
                         event_type=row.event_type, occurred_at=occurred, payload=row.payload,
                         prev_hash=row.prev_hash, hash=row.hash, chain=chain)
