"""`nvf waits` (the waiting-time lägesbild per region and over time) and `nvf capacity` (the units'
free-capacity feed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from marketplace.adapters.database import Database
from marketplace.adapters.waits_orm import UnitCapacityRow
from marketplace.entrypoints.commands.db import ready
from marketplace.errors import parse_day
from marketplace.log_config import configure_logging
from marketplace.services.capacity import feed
from marketplace.services.waiting_times import (
    ImportReport,
    import_bytes,
    import_sample,
    overview,
    read_file,
    region_history,
)
from marketplace.settings import Settings
from marketplace.waiting_times.capacity import UnitReport
from marketplace.waiting_times.csv_format import FileRefused
from marketplace.waiting_times.figures import (
    BUCKETS,
    STALE_AFTER,
    Period,
    RegionView,
    Status,
    WaitFigures,
    stale_from,
)
from matchers.reference import care_areas, regions

# Off a terminal (a pipe, a test), Rich would fold the tables to 80 columns; give them room.
console = Console(width=None if Console().is_terminal else 160)
err_console = Console(stderr=True)
T = TypeVar("T")
_SPARKS = "▁▂▃▄▅▆▇█"
MAX_ERRORS_SHOWN = 50


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]{message}[/red]", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _today(text: str | None) -> date:
    return parse_day(text, "--today") or date.today()


def _check_care_area(care_area: str | None) -> None:
    if care_area is not None and care_area not in care_areas():
        raise _fail(f"--care-area {care_area!r} is unknown; choose from {', '.join(care_areas())}")


def _check_region(region: str | None) -> None:
    if region is not None and region not in regions():
        raise _fail(f"--region {region!r} is not a region code; choose from {', '.join(regions())}")


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database.of(settings)
    try:
        await ready(db, settings)
        return await work(db)
    finally:
        await db.dispose()


def waits(
    care_area: Annotated[str | None, typer.Option(help="only this care area, e.g. cataract; default all")] = None,
    region: Annotated[str | None, typer.Option(help="one region's months in detail, e.g. 01")] = None,
    period: Annotated[str | None, typer.Option(help="the month to show (YYYY-MM); default each region's "
                                                    "newest; the trend is the 13 months up to it")] = None,
    import_: Annotated[list[Path] | None, typer.Option("--import", help="import this file first (semicolon-"
                                                       "separated UTF-8; repeatable)")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="import the shipped synthetic sample first")] = False,
    today: Annotated[str | None, typer.Option(help="the day to judge staleness on (YYYY-MM-DD); "
                                                   "default today")] = None,
    units: Annotated[bool, typer.Option("--units", help="show the units' free-capacity feed instead")] = False,
) -> None:
    """Waiting times per region (lägesbild): the newest month's share within the 90-day guarantee,
    median wait and number waiting, the 13-month trend, and whether the region's figures are stale."""
    _check_care_area(care_area)
    _check_region(region)
    day = _today(today)
    try:
        month = Period.parse(period) if period else None
    except ValueError as exc:
        raise _fail(f"--period: {exc}") from exc
    if units:
        capacity(care_area=care_area, region=region, today=today)
        return
    settings = _settings()
    refused = asyncio.run(_with_db(settings, lambda db: _imports(db, import_ or [], sample)))
    areas = [care_area] if care_area else list(care_areas())
    shown = asyncio.run(_with_db(settings, lambda db: _show(db, areas, region, month, day)))
    if not shown:
        console.print("no waiting-time figures stored yet: import a file with [bold]nvf waits --import FILE[/bold], "
                      "or the shipped sample with [bold]nvf waits --sample[/bold]")
    if refused:
        raise typer.Exit(1)


async def _imports(db: Database, files: list[Path], sample: bool) -> int:
    refused = 0
    for path in files:
        try:
            report = await import_bytes(db, read_file(path), source=path.name)
        except FileRefused as exc:
            raise _fail(f"{path}: {exc}") from exc
        refused += len(report.errors)
        _print_report(report)
    if sample:
        _print_report(await import_sample(db))
    return refused


def _print_report(report: ImportReport) -> None:
    colour = "red" if report.errors else "green"
    console.print(f"[{colour}]{report.source}[/{colour}]: {report.rows} rows: {report.inserted} new, "
                  f"{report.updated} updated, {report.unchanged} unchanged, {len(report.errors)} refused",
                  highlight=False)
    for error in report.errors[:MAX_ERRORS_SHOWN]:
        console.print(f"  {report.source}: {error}", highlight=False, soft_wrap=True)
    if len(report.errors) > MAX_ERRORS_SHOWN:
        console.print(f"  ... and {len(report.errors) - MAX_ERRORS_SHOWN} more refused rows")


async def _show(db: Database, areas: list[str], region: str | None, month: Period | None, day: date) -> bool:
    shown = False
    for area in areas:
        views = await overview(db, area, today=day, period=month, region=region)
        if not any(v.has_data for v in views):
            continue
        shown = True
        console.print(overview_table(area, views, day))
        if region is not None:
            cells = await region_history(db, area, region)
            console.print(history_table(area, region, [c for c in cells if month is None or c.period <= month]))
    return shown


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f} %"


def _days(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}".replace(",", " ")


def sparkline(values: tuple[float | None, ...]) -> str:
    """One character per month, scaled between the row's own lowest and highest; "·" where missing."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    return "".join("·" if v is None else _SPARKS[round((v - low) / span * (len(_SPARKS) - 1)) if span else 3]
                   for v in values)


def _trend(view: RegionView) -> str:
    known = [v for v in view.trend if v is not None]
    if not known:
        return "–"
    change = (known[-1] - known[0]) * 100
    return f"{sparkline(view.trend)} {change:+.0f} pp"


def _cell(figures: WaitFigures | None, show: Callable[[WaitFigures], str]) -> str:
    if figures is None:
        return "–"
    return "<5" if figures.suppressed else show(figures)


def overview_table(area: str, views: list[RegionView], day: date) -> Table:
    name = care_areas()[area].name_sv
    table = Table(title=f"{name} ({area}): waiting times per region, as of {day}", title_justify="left",
                  caption=f"≤90 d: share within the 90-day care guarantee. Trend: share of the waiting within "
                          f"90 days over 13 months, and its change. Figures for a month are due on the 25th of "
                          f"the next; stale: more than {STALE_AFTER.days // 7} weeks past that for the newest "
                          f"month. <5: suppressed.", caption_justify="left")
    for heading, justify in (("region", "left"), ("month", "left"), ("waiting", "right"), ("≤90 d", "right"),
                             ("median d", "right"), ("operated", "right"), ("≤90 d", "right"),
                             ("median d", "right"), ("mean d", "right"), ("trend, waiting ≤90 d", "left"),
                             ("figures", "left")):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    names = regions()
    for view in views:
        label = f"{view.region} {names[view.region].name.removeprefix('Region ')}"
        if not view.has_data:
            table.add_row(label, "–", "", "", "", "", "", "", "", "", "[dim]no data[/dim]")
            continue
        assert view.newest is not None
        w, c = view.waiting, view.completed
        freshness = "[yellow]stale[/yellow]" if view.stale else "fresh"
        table.add_row(
            label, str(view.newest),
            _cell(w, lambda f: _count(f.count)), _cell(w, lambda f: _pct(f.share_within_90)),
            _cell(w, lambda f: _days(f.median_days)),
            _cell(c, lambda f: _count(f.count)), _cell(c, lambda f: _pct(f.share_within_90)),
            _cell(c, lambda f: _days(f.median_days)), _cell(c, lambda f: _days(f.mean_days)),
            _trend(view), freshness,
        )
    return table


def history_table(area: str, region: str, cells: list[WaitFigures]) -> Table:
    name = regions()[region].name
    newest = max((c.period for c in cells), default=None)
    title = f"{name}, {area}: month by month"
    if newest is not None:
        title += f" (newest {newest}, stale from {stale_from(newest)})"
    table = Table(title=title, title_justify="left")
    for heading in ("month", "status", "count", *BUCKETS, "≤90 d", "median d", "mean d"):
        table.add_column(heading, justify="left" if heading in ("month", "status") else "right")
    for cell in sorted(cells, key=lambda c: (c.period, c.status is Status.COMPLETED), reverse=True):
        if cell.suppressed:
            table.add_row(str(cell.period), cell.status.value, "<5", *([""] * (len(BUCKETS) + 3)))
            continue
        buckets = [_count(b) for b in (cell.buckets or ())]
        table.add_row(str(cell.period), cell.status.value, _count(cell.count), *buckets,
                      _pct(cell.share_within_90), _days(cell.median_days), _days(cell.mean_days))
    return table


def capacity(
    care_area: Annotated[str | None, typer.Option(help="only this care area")] = None,
    region: Annotated[str | None, typer.Option(help="only this region code")] = None,
    today: Annotated[str | None, typer.Option(help="the day to judge the reports on (YYYY-MM-DD); "
                                                   "default today")] = None,
) -> None:
    """The units' free-capacity feed: estimated wait in weeks, free capacity yes/no and when it was updated
    (from the units' offers on the marketplace); stale after 6 weeks, "no data" where nothing is reported."""
    _check_care_area(care_area)
    _check_region(region)
    day = _today(today)
    rows = asyncio.run(_with_db(_settings(), lambda db: feed(db, today=day, care_area=care_area, region=region)))
    table = Table(title=f"free capacity per unit{f' ({care_area})' if care_area else ''}, as of {day}",
                  title_justify="left",
                  caption=f"From the units' open offers on the marketplace. Stale: not updated for more than "
                          f"{STALE_AFTER.days // 7} weeks.", caption_justify="left")
    for heading in ("region", "unit (HSA-id)", "care area", "estimated wait", "free capacity", "places",
                    "updated", "report"):
        table.add_column(heading, justify="right" if heading == "places" else "left")
    names = regions()
    by_region: dict[str, list[tuple[UnitCapacityRow, UnitReport]]] = {}
    for row, rep in rows:
        by_region.setdefault(row.region, []).append((row, rep))
    for code in [region] if region else list(names):
        label = f"{code} {names[code].name.removeprefix('Region ')}"
        if code not in by_region:
            table.add_row(label, "–", care_area or "–", "", "", "", "", "[dim]no data[/dim]")
            continue
        for row, rep in by_region[code]:
            table.add_row(label, row.unit_hsa_id, row.care_area, str(rep.band) if rep.band else "–",
                          "[green]ja[/green]" if rep.free_capacity else "nej", str(rep.places),
                          rep.updated_on.isoformat(), "[yellow]stale[/yellow]" if rep.stale else "fresh")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("waits")(waits)
    app.command("capacity")(capacity)
