"""The waiting-time file as regions export it: BOM or not, decimal commas, bad rows by line and column."""

from __future__ import annotations

import pytest

from marketplace.services.waiting_times import sample_bytes
from marketplace.waiting_times.csv_format import COLUMNS, FileRefused, decode, parse
from marketplace.waiting_times.figures import Period, Status
from marketplace.waiting_times.sample import POPULATION, sample_text
from matchers.reference import care_areas, regions

HEADER = ";".join(COLUMNS)
GOOD = "2026-09;01;cataract;completed;100;40;30;10;10;5;5;0;0,80;38;52,5;0"
GOOD_WAITING = "2026-09;01;cataract;waiting;200;80;60;20;20;10;10;0;0.8;40;;0"
SUPPRESSED = "2026-09;09;knee-replacement;completed;;;;;;;;;;;;1"


def read(*lines: str, bom: bool = False):
    data = (("\ufeff" if bom else "") + "\n".join([HEADER, *lines]) + "\n").encode("utf-8")
    return parse(decode(data), regions=regions(), care_areas=care_areas())


@pytest.mark.parametrize("bom", [True, False])
def test_with_or_without_a_bom_the_same_rows(bom):
    parsed = read(GOOD, GOOD_WAITING, SUPPRESSED, bom=bom)
    assert parsed.errors == []
    assert [line for line, _ in parsed.rows] == [2, 3, 4]
    first = parsed.rows[0][1]
    assert (first.period, first.region, first.status, first.count) == (Period(2026, 9), "01", Status.COMPLETED, 100)
    assert first.share_within_90 == 0.8 and first.mean_days == 52.5 and first.buckets == (40, 30, 10, 10, 5, 5, 0)
    assert parsed.rows[1][1].share_within_90 == 0.8  # a decimal point reads as well as a comma
    assert parsed.rows[2][1].suppressed and parsed.rows[2][1].count is None


def test_a_bad_row_is_reported_by_line_and_column_and_the_rest_read():
    parsed = read(GOOD, "2026-09;03;cataract;completed;100;40;30;10;10;5;5;9;0,8;38;52,5;0", GOOD_WAITING,
                  "2026-9;04;cataract;waiting;200;80;60;20;20;10;10;0;0,8;40;;0",
                  "2026-09;05;cataract;waiting;200;80;60;20;20;10;10;0;1,5;40;;0",
                  "2026-09;06;cataract;waiting;200;80;60;20;20;10;10;0;0,8;40;41;0",
                  "2026-09;09;knee-replacement;completed;3;;;;;;;;;;;1",
                  "2026-09;07;cataract;waiting;200;80;60;20;20;10;10;0;0,8;40;;kanske",
                  "2026-09;01;cataract;completed;100;40;30;10;10;5;5;0;0,80;38;52,5;0")
    assert [(e.line, e.column, e.rule) for e in parsed.errors] == [
        (3, "count", "buckets_sum_to_count"),
        (5, "period", "period_format"),
        (6, "share_within_90", "share_0_to_1"),
        (7, "mean_days", "mean_only_completed"),
        (8, "count", "suppressed_cell_empty"),
        (9, "suppressed", "flag_value"),
        (10, "period", "unique_key"),
    ]
    assert [line for line, _ in parsed.rows] == [2, 4]
    assert str(parsed.errors[0]).startswith("line 3, column count (buckets_sum_to_count): the buckets add up to 109")


def test_a_file_without_the_columns_is_refused_whole():
    with pytest.raises(FileRefused, match="share_within_90"):
        parse("period;region;care_area;status;count\n2026-09;01;cataract;waiting;10\n", regions=regions(),
              care_areas=care_areas())
    with pytest.raises(FileRefused, match="not UTF-8"):
        decode(HEADER.encode("utf-8") + "\n2026-09;01;Grå starr".encode("latin-1"))


def test_the_shipped_sample_is_what_its_generator_writes():
    # The sample is regenerated, never hand-edited: same seed, same file, byte for byte.
    assert sample_bytes() == sample_text().encode("utf-8")
    assert sample_bytes().startswith("\ufeff".encode())


def test_the_sample_covers_three_care_areas_and_21_regions_over_13_months():
    parsed = parse(decode(sample_bytes()), regions=regions(), care_areas=care_areas())
    assert parsed.errors == []
    cells = [f for _, f in parsed.rows]
    assert {f.care_area for f in cells} == {"cataract", "inguinal-hernia", "knee-replacement"}
    assert {f.region for f in cells} == set(POPULATION) == set(regions())
    assert {str(f.period) for f in cells} == {str(Period(2025, 10).plus(i)) for i in range(13)}
    # 3 areas x 21 regions x 13 months x 2 statuses, less the late region's two missing months.
    assert len(cells) == 3 * 21 * 13 * 2 - 3 * 2 * 2
    suppressed = [f for f in cells if f.suppressed]
    assert suppressed and {f.region for f in suppressed} <= {"09", "23", "10", "07"}
    volume = {area: sum(f.count or 0 for f in cells if f.care_area == area and f.status is Status.COMPLETED)
              for area in ("cataract", "knee-replacement")}
    assert volume["cataract"] > 5 * volume["knee-replacement"]
    median = {area: sorted(f.median_days or 0 for f in cells if f.care_area == area and not f.suppressed)
              for area in ("cataract", "knee-replacement")}
    assert median["knee-replacement"][len(median["knee-replacement"]) // 2] > \
        median["cataract"][len(median["cataract"]) // 2]
