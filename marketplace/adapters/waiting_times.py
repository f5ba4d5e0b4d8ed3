"""The store of waiting-time figures: save a file's valid rows (repeatably), read them back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.appends import append
from marketplace.adapters.orm import utcnow
from marketplace.adapters.waits_orm import WaitFiguresRow, WaitFiguresVersionRow
from marketplace.waiting_times.figures import BUCKET_COLUMNS, Period, Status, WaitFigures

CELLS = WaitFiguresRow.__table__  # type: ignore[attr-defined]
VERSIONS = WaitFiguresVersionRow.__table__  # type: ignore[attr-defined]


@dataclass
class SaveOutcome:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


def _columns(f: WaitFigures) -> dict[str, object]:
    buckets = f.buckets if f.buckets is not None else (None,) * len(BUCKET_COLUMNS)
    return {"suppressed": f.suppressed, "count": f.count, **dict(zip(BUCKET_COLUMNS, buckets, strict=True)),
            "share_within_90": f.share_within_90, "median_days": f.median_days, "mean_days": f.mean_days}


def to_figures(row: WaitFiguresRow) -> WaitFigures:
    buckets = tuple(getattr(row, c) for c in BUCKET_COLUMNS)
    return WaitFigures(
        period=Period.parse(row.period), region=row.region, care_area=row.care_area, status=Status(row.status),
        suppressed=row.suppressed, count=row.count,
        buckets=None if any(b is None for b in buckets) else tuple(int(b) for b in buckets),
        share_within_90=row.share_within_90, median_days=row.median_days, mean_days=row.mean_days,
    )


async def save(session: AsyncSession, rows: Sequence[tuple[int, WaitFigures]], *, source: str) -> SaveOutcome:
    """Insert new cells, update changed ones (a new version each, kept in the history), leave equal
    ones alone; the caller commits, so a file is stored whole or not at all."""
    outcome = SaveOutcome()
    if not rows:
        return outcome
    periods = sorted({str(f.period) for _, f in rows})
    existing = {(r.period, r.region, r.care_area, r.status): r for r in (await session.exec(
        select(WaitFiguresRow).where(col(WaitFiguresRow.period).in_(periods)))).all()}
    source = source[-200:]
    now = utcnow()
    for line, figures in rows:
        key = {"period": str(figures.period), "region": figures.region, "care_area": figures.care_area,
               "status": figures.status.value}
        current = existing.get(figures.key)
        if current is not None and to_figures(current).canonical() == figures.canonical():
            outcome.unchanged += 1
            continue
        if current is None:
            # New cells and every version are plain inserts, written in bulk at the commit.
            version = 1
            append(session, CELLS, {**key, **_columns(figures), "version": 1, "source": source, "imported_at": now})
            outcome.inserted += 1
        else:
            current.version += 1
            version = current.version
            for name, value in _columns(figures).items():
                setattr(current, name, value)
            current.source, current.imported_at = source, now
            session.add(current)
            outcome.updated += 1
        append(session, VERSIONS, {**key, "version": version, "figures": figures.canonical(), "source": source,
                                   "line": line, "imported_at": now})
    return outcome


async def load(session: AsyncSession, *, care_area: str | None = None,
               region: str | None = None) -> list[WaitFigures]:
    query = select(WaitFiguresRow)
    if care_area is not None:
        query = query.where(WaitFiguresRow.care_area == care_area)
    if region is not None:
        query = query.where(WaitFiguresRow.region == region)
    return [to_figures(r) for r in (await session.exec(query)).all()]


async def versions(session: AsyncSession, key: tuple[str, str, str, str]) -> list[WaitFiguresVersionRow]:
    period, region, care_area, status = key
    query = (select(WaitFiguresVersionRow)
             .where(WaitFiguresVersionRow.period == period, WaitFiguresVersionRow.region == region,
                    WaitFiguresVersionRow.care_area == care_area, WaitFiguresVersionRow.status == status)
             .order_by(col(WaitFiguresVersionRow.version)))
    return list((await session.exec(query)).all())
