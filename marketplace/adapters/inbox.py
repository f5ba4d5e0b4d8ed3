"""The inbox of an idempotent consumer: processed event ids, recorded with the effect."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.appends import append
from marketplace.adapters.orm import ProcessedEventRow

PROCESSED = ProcessedEventRow.__table__  # type: ignore[attr-defined]


async def already_processed(session: AsyncSession, consumer: str, event_ids: Iterable[str]) -> set[str]:
    return set(await processed_digests(session, consumer, event_ids))


async def processed_digests(session: AsyncSession, consumer: str,
                            event_ids: Iterable[str]) -> dict[str, str | None]:
    """Of `event_ids`, those this consumer has processed, with the digest of what each carried
    (None when it was recorded without one)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    query = select(ProcessedEventRow.event_id, ProcessedEventRow.digest).where(
        ProcessedEventRow.consumer == consumer, col(ProcessedEventRow.event_id).in_(ids))
    return {eid: digest for eid, digest in (await session.exec(query)).all()}


def record_processed(session: AsyncSession, consumer: str, event_id: str, digest: str | None = None) -> None:
    # The primary key (consumer, event_id) makes a concurrent duplicate fail its whole transaction.
    append(session, PROCESSED, {"consumer": consumer, "event_id": event_id, "digest": digest,
                                "processed_at": datetime.now(UTC)})
