"""Importing waiting-time files and reading the lägesbild per region."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path

import structlog
from sqlalchemy.exc import IntegrityError

from marketplace.adapters import waiting_times as store
from marketplace.adapters.database import Database
from marketplace.waiting_times.csv_format import FileRefused, RowError, decode, parse
from marketplace.waiting_times.figures import Period, RegionView, WaitFigures, region_view
from matchers.reference import care_areas, regions

SAMPLE = "waiting_times_sample.csv"
MAX_FILE_BYTES = 50 * 1024 * 1024
log = structlog.get_logger(__name__)


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


def sample_bytes() -> bytes:
    """The synthetic sample shipped as package data (see marketplace/waiting_times/sample.py)."""
    return resources.files("marketplace").joinpath("data", SAMPLE).read_bytes()


def read_file(path: Path) -> bytes:
    """A file's bytes, or FileRefused with one line saying why not."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FileRefused(f"the file is {size} bytes; at most {MAX_FILE_BYTES} are read")
        return path.read_bytes()
    except OSError as exc:
        raise FileRefused(f"cannot read the file: {exc.strerror or exc}") from exc


async def import_bytes(db: Database, data: bytes, *, source: str) -> ImportReport:
    """Parse and store a file: every valid row in one transaction, every bad row reported.

    Raises FileRefused when the file as a whole cannot be read (nothing is stored then).
    """
    parsed = parse(decode(data), regions=regions(), care_areas=care_areas())
    report = ImportReport(source=source, rows=len(parsed.rows) + len(parsed.errors), errors=parsed.errors)
    for attempt in range(2):
        try:
            async with db.session() as session:
                outcome = await store.save(session, parsed.rows, source=source)
                await session.commit()
            break
        except IntegrityError:
            # Another import inserted some of these cells meanwhile; a second pass sees them.
            if attempt:
                raise
    report.inserted, report.updated, report.unchanged = outcome.inserted, outcome.updated, outcome.unchanged
    log.info("waiting_times.imported", source=source, rows=report.rows, inserted=report.inserted,
             updated=report.updated, unchanged=report.unchanged, errors=len(report.errors))
    return report


async def import_sample(db: Database) -> ImportReport:
    return await import_bytes(db, sample_bytes(), source=f"sample:{SAMPLE}")


async def overview(db: Database, care_area: str, *, today: date, period: Period | None = None,
                   region: str | None = None) -> list[RegionView]:
    """One view per region (every region, "no data" ones too), in the reference data's order."""
    async with db.session() as session:
        cells = await store.load(session, care_area=care_area, region=region)
    codes = [region] if region else list(regions())
    return [region_view(code, care_area, cells, today=today, period=period) for code in codes]


async def region_history(db: Database, care_area: str, region: str) -> list[WaitFigures]:
    async with db.session() as session:
        return sorted(await store.load(session, care_area=care_area, region=region),
                      key=lambda f: (f.period, f.status.value))
