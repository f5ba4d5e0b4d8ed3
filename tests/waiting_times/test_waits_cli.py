"""`nvf waits` and `nvf capacity` as a user runs them: real processes on the configured database."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from sqlmodel import select

from marketplace.adapters.database import Database
from marketplace.adapters.orm import OfferRow
from marketplace.services.waiting_times import sample_bytes
from tests.integration.test_cli import demo_env, run_nvf

pytestmark = pytest.mark.integration
TODAY = ["--today", "2026-11-30"]


async def places_left(tmp_path, settings) -> dict[str, int]:
    """Per cataract unit, the places its open offers have left, read from the demo's own store."""
    url = settings.effective_database_url if settings.db_schema else \
        f"sqlite+aiosqlite:///{tmp_path / 'state' / 'marketplace.db'}"
    db = Database(url, schema=settings.db_schema)
    try:
        async with db.session() as session:
            offers = (await session.exec(select(OfferRow).where(OfferRow.care_area == "cataract"))).all()
    finally:
        await db.dispose()
    left: dict[str, int] = defaultdict(int)
    for offer in offers:
        left[offer.unit_hsa_id] += offer.remaining if offer.status == "open" else 0
    return dict(left)


def line_of(output: str, start: str) -> str:
    found = [line for line in output.splitlines() if line.startswith(f"│ {start}")]
    assert len(found) == 1, output
    return found[0]


def test_waits_imports_a_file_and_shows_the_regions(tmp_path, settings, database):
    env = demo_env(tmp_path, settings)
    plain = tmp_path / "väntetider.csv"
    plain.write_bytes(sample_bytes().removeprefix("\ufeff".encode()))  # the same figures without a BOM
    first = run_nvf(["waits", "--import", str(plain), "--care-area", "cataract", *TODAY], env, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "väntetider.csv: 1626 rows: 1626 new, 0 updated, 0 unchanged, 0 refused" in first.stdout
    assert "Kataraktoperation (cataract): waiting times per region, as of 2026-11-30" in first.stdout
    stockholm = line_of(first.stdout, "01 Stockholm")
    assert all(part in stockholm for part in ("2026-10", "4 285", "86 %", "42", "2 465", "+12 pp", "fresh"))
    assert "2026-08" in line_of(first.stdout, "23 Jämtland") and "stale" in line_of(first.stdout, "23 Jämtland")
    # A second import of the same file changes nothing; a month later Stockholm's figures are stale too.
    again = run_nvf(["waits", "--import", str(plain), "--care-area", "cataract", "--today", "2027-01-07"], env,
                    timeout=120)
    assert "1626 rows: 0 new, 0 updated, 1626 unchanged" in again.stdout
    assert "stale" in line_of(again.stdout, "01 Stockholm")
    detail = run_nvf(["waits", "--care-area", "knee-replacement", "--region", "09", *TODAY], env, timeout=120)
    assert detail.returncode == 0, detail.stderr[-2000:]
    assert "Region Gotland, knee-replacement: month by month (newest 2026-10, stale from 2027-01-07)" in detail.stdout
    assert "<5" in line_of(detail.stdout, "2026-10 │ completed")


def test_waits_reports_bad_rows_and_bad_arguments_in_one_line(tmp_path, settings, database):
    env = demo_env(tmp_path, settings)
    lines = sample_bytes().decode("utf-8-sig").splitlines()
    lines[4] = lines[4].replace("2025-10", "2025-13")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_nvf(["waits", "--import", str(bad), "--care-area", "cataract", *TODAY], env, timeout=120)
    assert result.returncode == 1
    assert "bad.csv: 1626 rows: 1625 new, 0 updated, 0 unchanged, 1 refused" in result.stdout
    assert "bad.csv: line 5, column period (period_format): '2025-13': month 13 is not 01..12" in result.stdout
    assert "01 Stockholm" in result.stdout  # the rest was imported and is shown
    headless = tmp_path / "headless.csv"
    headless.write_text("2026-09;01;cataract\n", encoding="utf-8")
    for args, message in (
        (["--import", str(headless)], "column(s) missing from the header"),
        (["--import", str(tmp_path / "missing.csv")], "cannot read"),
        (["--care-area", "hip"], "--care-area 'hip' is unknown"),
        (["--region", "02"], "--region '02' is not a region code"),
        (["--period", "2026-13"], "--period: '2026-13': month 13 is not 01..12"),
        (["--today", "30/11"], "--today '30/11' is not a date"),
    ):
        refused = run_nvf(["waits", *args], env, timeout=120)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert message in refused.stderr and "Traceback" not in refused.stderr + refused.stdout


def test_an_empty_store_says_how_to_fill_it(tmp_path, settings, database):
    result = run_nvf(["waits", *TODAY], demo_env(tmp_path, settings), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no waiting-time figures stored yet" in result.stdout


@pytest.mark.slow
def test_after_the_demo_waits_and_capacity_print_its_data(tmp_path, settings, database):
    env = demo_env(tmp_path, settings)
    demo = run_nvf(["demo"], env, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "waiting times: 1626 monthly figures of 21 regions registered" in demo.stdout
    waits = run_nvf(["waits", "--care-area", "cataract", *TODAY], env, timeout=120)
    assert waits.returncode == 0, waits.stderr[-2000:]
    assert "Kataraktoperation (cataract)" in waits.stdout and "4 285" in line_of(waits.stdout, "01 Stockholm")
    assert sum(1 for line in waits.stdout.splitlines() if line.startswith("│ ")) == 21
    # The demo's offers reached the feed through the bus: each unit shows the places its offers have left
    # after the matches and the parties' declines, as the offers table has them.
    capacity = run_nvf(["capacity", "--care-area", "cataract", "--today", "2026-03-02"], env, timeout=120)
    assert capacity.returncode == 0, capacity.stderr[-2000:]
    left = asyncio.run(places_left(tmp_path, settings))
    assert set(left) >= {"SE2321000016-KAT01", "SE2321000016-KAT02", "SE2321000115-KAT11"}
    for unit, places in left.items():
        shown = [line.split("│") for line in capacity.stdout.splitlines() if unit in line]
        assert len(shown) == 1, capacity.stdout
        assert shown[0][5].strip() == ("ja" if places else "nej") and int(shown[0][6]) == places, shown
        assert shown[0][8].strip() == "fresh"
    assert "no data" in line_of(capacity.stdout, "03 Uppsala")
    units = run_nvf(["waits", "--units", "--care-area", "cataract"], env, timeout=120)
    assert units.returncode == 0 and "SE2321000016-KAT01" in units.stdout
