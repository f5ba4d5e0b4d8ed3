"""The agreements file a region exports: rows checked one by one, events derived from their content."""

from __future__ import annotations

from importlib import resources

import pytest

from marketplace.agreements.csv_import import ImportFileError, plan_import

SAMPLE = resources.files("marketplace.agreements").joinpath("samples/agreements-25.csv").read_bytes()
HEADER = ("avtals_id;köpare;utförare;hsa_id;enhet;vårdområden;giltig_från;giltig_till;pris_sek;prisvillkor;"
          "enhet_telefon;enhet_epost;enhet_adress;region_kontakt;region_telefon;region_epost")


def row(agreement_id: str = "X-1", **changes: str) -> str:
    fields = {"avtals_id": agreement_id, "köpare": "25", "utförare": "01", "hsa_id": "SE2321000016-KAT01",
              "enhet": "Ögonkliniken", "vårdområden": "cataract", "giltig_från": "2026-01-01",
              "giltig_till": "2026-12-31", "pris_sek": "9 800,50", "prisvillkor": "", "enhet_telefon": "",
              "enhet_epost": "", "enhet_adress": "", "region_kontakt": "Vårdförmedlingen", "region_telefon": "",
              "region_epost": ""}
    fields.update(changes)
    return ";".join(fields.values())


def test_the_shipped_sample_imports_whole_with_or_without_its_bom():
    assert SAMPLE.startswith(b"\xef\xbb\xbf")
    with_bom, without = plan_import(SAMPLE, "25"), plan_import(SAMPLE[3:], "25")
    assert with_bom.problems == [] and len(with_bom.rows) == 5
    assert [r.envelope.event_id for r in with_bom.rows] == [r.envelope.event_id for r in without.rows]
    first = with_bom.rows[0].envelope
    assert (first.type, first.producer, first.payload["agreement_id"]) == ("agreement.registered", "25", "NLL-2026-001")
    assert first.payload["terms"]["price_sek"] == 9800.0  # "9 800,00": Swedish thousands and decimal comma


def test_the_same_file_gives_the_same_events_and_a_changed_row_a_new_one():
    text = "\n".join([HEADER, row("X-1"), row("X-2", utförare="18", hsa_id="SE2321000164-KAT31")]) + "\n"
    again = plan_import(text.encode(), "25")
    assert [r.envelope.event_id for r in plan_import(text.encode(), "25").rows] == [
        r.envelope.event_id for r in again.rows]
    changed = plan_import(text.replace("9 800,50", "9 900").encode(), "25")
    assert changed.rows[0].envelope.event_id != again.rows[0].envelope.event_id
    assert changed.rows[1].envelope.event_id != again.rows[1].envelope.event_id  # both rows had that price


def test_bad_rows_are_reported_with_line_column_and_rule_and_the_rest_still_goes():
    lines = [
        HEADER,
        row("OK-1"),                                              # line 2
        row("BAD-HSA", hsa_id="SE2321000017-KAT01"),              # line 3: check digit
        row("BAD-DATE", giltig_från="2026-13-01"),                # line 4
        row("BAD-AREA", vårdområden="cataract,hip"),              # line 5
        row("BAD-BUYER", köpare="24"),                            # line 6: not the importer's
        row("OK-1"),                                              # line 7: the same id again
        row("BAD-PRICE", pris_sek="gratis"),                      # line 8
        row("BAD-ORDER", giltig_till="2025-01-01"),               # line 9
        "",                                                       # line 10: blank, skipped
        row("OK-2", enhet_epost="ogon@example.se"),               # line 11
        row("BAD-MAIL", enhet_epost="not-an-address"),            # line 12
    ]
    plan = plan_import(("\n".join(lines) + "\n").encode(), "25")
    assert [r.agreement_id for r in plan.rows] == ["OK-1", "OK-2"]
    assert [(p.line, p.column, p.rule) for p in plan.problems] == [
        (3, "hsa_id", "hsa_id"),
        (4, "giltig_från", "date_from_datetime_parsing"),
        (5, "vårdområden", "known_care_area"),
        (6, "köpare", "purchaser_is_importer"),
        (7, "avtals_id", "unique_id"),
        (8, "pris_sek", "float_parsing"),
        (9, "giltig_till", "validity_order"),
        (12, "enhet_epost", "string_pattern_mismatch"),
    ]
    assert "line 3, column hsa_id" in str(plan.problems[0])


def test_a_quoted_field_over_two_lines_keeps_the_line_numbers_of_later_rows():
    text = "\n".join([HEADER, row("Q-1", prisvillkor='"rad ett\nrad två"'), row("BAD", hsa_id="x")]) + "\n"
    plan = plan_import(text.encode(), "25")
    assert [r.line for r in plan.rows] == [2]
    assert [(p.line, p.column) for p in plan.problems] == [(4, "hsa_id")]


@pytest.mark.parametrize(("data", "says"), [
    ("avtals_id;köpare\nX;25\n".encode(), "line 1: the header lacks"),
    (HEADER.encode() + b"\n" + row().encode("latin-1"), "line 2: the file is not UTF-8"),
])
def test_a_file_that_cannot_be_read_is_refused_whole_with_one_clear_line(data, says):
    with pytest.raises(ImportFileError, match=says):
        plan_import(data, "25")
