"""Idempotency-Key (IETF httpapi draft): one client's key names one request, done at most once.

`claim` records the key as in flight before anything is done; a second request with the same key
gets the stored answer once the first is done (`Replay`), a conflict while it runs (`InFlight`),
or a refusal if its body differs (`Mismatch`). Keys are scoped per client and kept for a stated
time (`NVF_API_IDEMPOTENCY_TTL_S`), then forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from marketplace.adapters.api_orm import AuditRow, IdempotencyRow
from marketplace.adapters.database import Database
from marketplace.adapters.orm import utcnow

IN_FLIGHT = "in_flight"
COMPLETED = "completed"


@dataclass(frozen=True)
class Claimed:
    pass


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass(frozen=True)
class InFlight:
    pass


@dataclass(frozen=True)
class Mismatch:
    pass


Claim = Claimed | Replay | InFlight | Mismatch


def _aware(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes for what was stored as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=utcnow().tzinfo)


async def claim(db: Database, client_id: str, key: str, fingerprint: str, ttl_s: int) -> Claim:
    now = utcnow()
    for _ in range(3):
        async with db.session() as session:
            existing = await session.get(IdempotencyRow, (client_id, key))
            if existing is not None and _aware(existing.expires_at) <= now:
                await session.delete(existing)
                await session.commit()
                existing = None
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    return Mismatch()
                if existing.state != COMPLETED:
                    return InFlight()
                return Replay(existing.status_code or 200, dict(existing.body or {}), dict(existing.headers or {}))
            session.add(IdempotencyRow(client_id=client_id, key=key, fingerprint=fingerprint, state=IN_FLIGHT,
                                       expires_at=now + timedelta(seconds=ttl_s)))
            try:
                await session.commit()
            except IntegrityError:
                # Another request with the same key got there first: look again.
                await session.rollback()
                continue
            return Claimed()
    return InFlight()


async def complete(db: Database, client_id: str, key: str, status_code: int, body: dict[str, Any],
                   headers: dict[str, str], audit: AuditRow) -> None:
    """Store the response for retries, with the audit entry of the write, in one transaction."""
    async with db.session() as session:
        row = await session.get(IdempotencyRow, (client_id, key))
        if row is not None:
            row.state, row.status_code, row.body, row.headers = COMPLETED, status_code, body, headers
            session.add(row)
        session.add(audit)
        await session.commit()


async def release(db: Database, client_id: str, key: str, audit: AuditRow | None = None) -> None:
    """Forget a key whose request was answered before anything was done (a retry may do it then)."""
    async with db.session() as session:
        row = await session.get(IdempotencyRow, (client_id, key))
        if row is not None and row.state == IN_FLIGHT:
            await session.delete(row)
        if audit is not None:
            session.add(audit)
        await session.commit()


async def purge_expired(db: Database) -> int:
    async with db.session() as session:
        result: Any = await session.exec(delete(IdempotencyRow).where(
            col(IdempotencyRow.expires_at) <= utcnow()))
        await session.commit()
        return int(result.rowcount or 0)
