"""Importing waiting-time files into the real databases: the sample, repeated, corrected, with bad rows."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import func, select

from marketplace.adapters import waiting_times as store
from marketplace.adapters.waits_orm import WaitFiguresRow, WaitFiguresVersionRow
from marketplace.services.waiting_times import import_bytes, import_sample, overview, sample_bytes
from marketplace.waiting_times.csv_format import FileRefused

pytestmark = pytest.mark.integration
SAMPLE_ROWS = 1626
STOCKHOLM_WAITING = "2026-10;01;cataract;waiting;4285;1532;1386;752;352;217;46;0;0,856;42;;0"


async def snapshot(db) -> list[tuple[object, ...]]:
    async with db.session() as session:
        rows = (await session.exec(select(WaitFiguresRow))).all()
        versions = (await session.exec(select(func.count()).select_from(WaitFiguresVersionRow))).one()
    return [*sorted((r.period, r.region, r.care_area, r.status, r.version, r.count, r.share_within_90,
                     r.median_days, r.mean_days, r.suppressed) for r in rows), ("versions", versions)]


async def test_the_sample_imports_with_its_figures(database):
    report = await import_sample(database)
    assert (report.rows, report.inserted, report.updated, report.unchanged, report.errors) == \
        (SAMPLE_ROWS, SAMPLE_ROWS, 0, 0, [])
    async with database.session() as session:
        cells = {f.key: f for f in await store.load(session)}
    assert len(cells) == SAMPLE_ROWS
    stockholm = cells[("2026-10", "01", "cataract", "waiting")]
    assert (stockholm.count, stockholm.buckets, stockholm.share_within_90, stockholm.median_days,
            stockholm.mean_days) == (4285, (1532, 1386, 752, 352, 217, 46, 0), 0.856, 42.0, None)
    operated = cells[("2026-10", "01", "cataract", "completed")]
    assert (operated.count, operated.mean_days) == (2465, 45.2)
    gotland_knee = cells[("2026-10", "09", "knee-replacement", "completed")]
    assert gotland_knee.suppressed and gotland_knee.count is None and gotland_knee.median_days is None
    views = {v.region: v for v in await overview(database, "cataract", today=date(2026, 11, 30))}
    assert views["01"].newest is not None and str(views["01"].newest) == "2026-10" and not views["01"].stale
    assert str(views["23"].newest) == "2026-08" and views["23"].stale  # Jämtland Härjedalen reports late


async def test_the_same_file_twice_changes_nothing(database):
    await import_sample(database)
    before = await snapshot(database)
    again = await import_sample(database)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, SAMPLE_ROWS)
    assert await snapshot(database) == before


async def test_a_changed_row_updates_and_keeps_its_versions(database):
    await import_sample(database)
    corrected = sample_bytes().decode("utf-8-sig").replace(
        STOCKHOLM_WAITING, "2026-10;01;cataract;waiting;4290;1537;1386;752;352;217;46;0;0,857;42;;0")
    assert corrected != sample_bytes().decode("utf-8-sig")
    report = await import_bytes(database, corrected.encode("utf-8"), source="rättelse.csv")  # no BOM this time
    assert (report.inserted, report.updated, report.unchanged, report.errors) == (0, 1, SAMPLE_ROWS - 1, [])
    key = ("2026-10", "01", "cataract", "waiting")
    async with database.session() as session:
        row = await session.get(WaitFiguresRow, key)
        history = await store.versions(session, key)
    assert row is not None and (row.count, row.share_within_90, row.version, row.source) == \
        (4290, 0.857, 2, "rättelse.csv")
    assert [(v.version, v.figures["count"], v.source) for v in history] == \
        [(1, 4285, "sample:waiting_times_sample.csv"), (2, 4290, "rättelse.csv")]


async def test_bad_rows_are_reported_by_line_and_column_and_the_rest_imports(database):
    lines = sample_bytes().decode("utf-8-sig").splitlines()
    number = lines.index(STOCKHOLM_WAITING) + 1
    lines[number - 1] = STOCKHOLM_WAITING.replace(";0,856;", ";85,6;")  # a percentage where a share belongs
    lines[1] = lines[1].replace(";completed;", ";operated;")
    report = await import_bytes(database, ("\n".join(lines) + "\n").encode("utf-8"), source="bad.csv")
    assert [(e.line, e.column, e.rule) for e in report.errors] == [
        (2, "status", "status_value"), (number, "share_within_90", "share_0_to_1")]
    assert (report.rows, report.inserted) == (SAMPLE_ROWS, SAMPLE_ROWS - 2)
    async with database.session() as session:
        assert await session.get(WaitFiguresRow, ("2026-10", "01", "cataract", "waiting")) is None
        assert await session.get(WaitFiguresRow, ("2026-10", "01", "cataract", "completed")) is not None


async def test_a_file_refused_whole_stores_nothing(database):
    with pytest.raises(FileRefused):
        await import_bytes(database, b"period;region\n2026-09;01\n", source="half.csv")
    assert await snapshot(database) == [("versions", 0)]


async def test_two_imports_of_one_file_at_once_store_it_once(database):
    import asyncio

    reports = await asyncio.gather(import_sample(database), import_sample(database))
    assert sorted((r.inserted, r.unchanged) for r in reports) == [(0, SAMPLE_ROWS), (SAMPLE_ROWS, 0)]
    rows = await snapshot(database)
    assert len(rows) == SAMPLE_ROWS + 1 and rows[-1] == ("versions", SAMPLE_ROWS)
