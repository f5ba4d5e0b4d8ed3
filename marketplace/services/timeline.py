"""The timeline projection: every case event appended once, in order, to its case's hash chain."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import Envelope, Payload
from marketplace.adapters.orm import TimelineRow
from marketplace.lifecycle.timeline import GENESIS_HASH, TimelineEntry, canonical_json, chain_hash
from marketplace.services.context import ServiceContext
from marketplace.services.inbound import trusted_events

CONSUMER = "timeline"


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
    # No inbox here: the timeline's unique (case_ref, event_id) already makes an append idempotent.
    await append_events(session, trusted_events(items))


async def append_events(session: AsyncSession, items: Sequence[tuple[Envelope, Payload]]) -> int:
    """Append the case events among `items`; an event already on its timeline is skipped."""
    case_items = [(env, p) for env, p in items if isinstance(getattr(p, "case_ref", None), str)]
    if not case_items:
        return 0
    refs = {p.case_ref for _, p in case_items}  # type: ignore[attr-defined]
    rows = (await session.exec(
        select(TimelineRow.case_ref, TimelineRow.version, TimelineRow.hash, TimelineRow.event_id)
        .where(col(TimelineRow.case_ref).in_(refs)))).all()
    heads: dict[str, tuple[int, str]] = {}
    present: set[tuple[str, str]] = set()
    for case_ref, version, digest, event_id in rows:
        present.add((case_ref, event_id))
        if version > heads.get(case_ref, (0, ""))[0]:
            heads[case_ref] = (version, digest)
    appended = 0
    for envelope, payload in case_items:
        case_ref: str = payload.case_ref  # type: ignore[attr-defined]
        key = (case_ref, str(envelope.event_id))
        if key in present:
            continue
        present.add(key)
        version, prev_hash = heads.get(case_ref, (0, GENESIS_HASH))
        version += 1
        # Stored exactly as hashed: the canonical JSON round trip.
        body = _canonical(envelope.payload)
        digest = chain_hash(prev_hash, case_ref=case_ref, version=version, event_id=envelope.event_id,
                            event_type=envelope.type, occurred_at=envelope.occurred_at, payload=body)
        session.add(TimelineRow(case_ref=case_ref, version=version, event_id=str(envelope.event_id),
                                event_type=envelope.type, occurred_at=envelope.occurred_at, payload=body,
                                prev_hash=prev_hash, hash=digest))
        heads[case_ref] = (version, digest)
        appended += 1
    return appended


def _canonical(payload: dict[str, object]) -> dict[str, object]:
    return dict(json.loads(canonical_json(payload)))


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
