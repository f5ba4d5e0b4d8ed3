"""The waiting-time file: semicolon-separated UTF-8, with or without a BOM, as regional exports are.

One row per month, region, care area and status; the header names the columns (in any order;
columns not listed here, such as a response rate, are ignored):

    period;region;care_area;status;count;days_0_30;days_31_60;days_61_90;days_91_120;days_121_180;
    days_181_365;days_366_plus;share_within_90;median_days;mean_days;suppressed

Decimals may use a comma or a point (`0,87` or `0.87`); `suppressed` is 1/0, ja/nej, yes/no or
true/false; a suppressed row leaves every figure empty. Pure: it reads text, not files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from marketplace.waiting_times.figures import (
    BUCKET_COLUMNS,
    MAX_COUNT,
    Period,
    Status,
    Violation,
    WaitFigures,
    check,
)

KEY_COLUMNS = ("period", "region", "care_area", "status")
COLUMNS = (*KEY_COLUMNS, "count", *BUCKET_COLUMNS, "share_within_90", "median_days", "mean_days", "suppressed")
MAX_ROWS = 200_000
MAX_FIELD = 64

_TRUE = {"1", "ja", "yes", "true", "j", "y", "x"}
_FALSE = {"0", "nej", "no", "false", "n", ""}


class FileRefused(ValueError):
    """The file as a whole cannot be read (not UTF-8, no header, a required column missing)."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    column: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column} ({self.rule}): {self.message}"


@dataclass
class ParsedFile:
    rows: list[tuple[int, WaitFigures]] = field(default_factory=list)  # (line number, figures)
    errors: list[RowError] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, column: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.violation = Violation(column, rule, message)


def decode(data: bytes) -> str:
    """UTF-8 text, a leading BOM dropped."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused(f"the file is not UTF-8 (byte {exc.start}): export it as UTF-8") from exc


def parse(text: str, *, regions: Iterable[str], care_areas: Iterable[str]) -> ParsedFile:
    """Every valid row with its line number, and every bad row's first broken rule."""
    known_regions, known_areas = set(regions), set(care_areas)
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""), delimiter=";")
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not header:
        raise FileRefused("the file is empty: expected a header line naming the columns")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FileRefused(f"column(s) missing from the header: {', '.join(missing)} "
                          f"(a semicolon-separated file with the columns {';'.join(COLUMNS)})")
    reader.fieldnames = header
    out = ParsedFile()
    seen: dict[tuple[str, str, str, str], int] = {}
    for index, record in enumerate(reader):
        line = reader.line_num
        if index >= MAX_ROWS:
            raise FileRefused(f"more than {MAX_ROWS} rows: split the file")
        if None in record:
            out.errors.append(RowError(line, "(row)", "column_count",
                                       f"{len(header) + len(record[None])} fields, the header has {len(header)}"))
            continue
        try:
            figures = _figures(record)
        except _Bad as bad:
            v = bad.violation
            out.errors.append(RowError(line, v.column, v.rule, v.message))
            continue
        violations = check(figures, regions=known_regions, care_areas=known_areas)
        if violations:
            v = violations[0]
            out.errors.append(RowError(line, v.column, v.rule, v.message))
            continue
        if figures.key in seen:
            out.errors.append(RowError(line, "period", "unique_key",
                                       f"{'/'.join(figures.key)} is already on line {seen[figures.key]}"))
            continue
        seen[figures.key] = line
        out.rows.append((line, figures))
    return out


def _cell(record: dict[str, str | None], column: str) -> str:
    value = (record.get(column) or "").strip()
    if len(value) > MAX_FIELD:
        raise _Bad(column, "length", f"{column} is longer than {MAX_FIELD} characters")
    return value


def _figures(record: dict[str, str | None]) -> WaitFigures:
    period_text = _cell(record, "period")
    try:
        period = Period.parse(period_text)
    except ValueError as exc:
        raise _Bad("period", "period_format", str(exc)) from exc
    status_text = _cell(record, "status").lower()
    try:
        status = Status(status_text)
    except ValueError as exc:
        raise _Bad("status", "status_value", f"status {status_text!r} is not waiting or completed") from exc
    flag = _cell(record, "suppressed").lower()
    if flag not in _TRUE | _FALSE:
        raise _Bad("suppressed", "flag_value", f"suppressed {flag!r} is not 1/0, ja/nej, yes/no or true/false")
    buckets = [_int(record, c) for c in BUCKET_COLUMNS]
    if any(b is None for b in buckets) and not all(b is None for b in buckets):
        column = BUCKET_COLUMNS[buckets.index(None)]
        raise _Bad(column, "required", "either every bucket count is given or none")
    return WaitFigures(
        period=period, region=_cell(record, "region"), care_area=_cell(record, "care_area"), status=status,
        suppressed=flag in _TRUE, count=_int(record, "count"),
        buckets=None if buckets[0] is None else tuple(b for b in buckets if b is not None),
        share_within_90=_decimal(record, "share_within_90"), median_days=_decimal(record, "median_days"),
        mean_days=_decimal(record, "mean_days"),
    )


def _int(record: dict[str, str | None], column: str) -> int | None:
    text = _cell(record, column).replace(" ", "").replace("\u00a0", "")
    if not text:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise _Bad(column, "whole_number", f"{column} {text!r} is not a whole number") from exc
    if abs(value) > MAX_COUNT:
        raise _Bad(column, "range", f"{column} {value} is not within 0..{MAX_COUNT}")
    return value


def _decimal(record: dict[str, str | None], column: str) -> float | None:
    text = _cell(record, column).replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise _Bad(column, "number", f"{column} {text!r} is not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad(column, "number", f"{column} {text!r} is not a finite number")
    return value


def write(rows: Iterable[WaitFigures], *, bom: bool = True) -> str:
    """The figures in the file's format (decimal comma, as Swedish exports write them)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(COLUMNS)
    for f in rows:
        figures = f.canonical()
        buckets = figures["buckets"] if isinstance(figures["buckets"], list) else [None] * len(BUCKET_COLUMNS)
        writer.writerow([
            figures["period"], f.region, f.care_area, f.status.value, _text(f.count), *map(_text, buckets),
            _text(figures["share_within_90"], 3), _text(figures["median_days"]), _text(figures["mean_days"]),
            "1" if f.suppressed else "0",
        ])
    return ("\ufeff" if bom else "") + buffer.getvalue()


def _text(value: object, places: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if places is not None:
            return f"{value:.{places}f}".replace(".", ",")
        return (f"{value:.1f}".removesuffix(".0")).replace(".", ",")
    return str(value)
