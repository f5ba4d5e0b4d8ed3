"""The care-area codes the product ships, with their source noted."""

from __future__ import annotations

import csv

from matchers.reference import care_areas
from tests.conftest import shared_path


def test_cataract_is_the_kva_group_not_one_code_and_hernia_includes_femoral():
    areas = care_areas()
    assert areas["cataract"].kva_groups == ("CJC", "CJD", "CJE")
    assert areas["cataract"].mvo == "511"
    assert areas["inguinal-hernia"].icd10 == ("K40", "K41")
    assert all(a.checked for a in areas.values())  # every row says where its codes come from


def test_the_shipped_codes_are_the_shared_reference_datas():
    with shared_path("data", "care_areas.csv").open(encoding="utf-8") as fh:
        source = {r["care_area"]: r for r in csv.DictReader(fh)}
    for code, area in care_areas().items():
        row = source[code]
        assert (area.name_sv, area.snomed_procedure, ";".join(area.icd10), ";".join(area.kva_groups), area.mvo) == (
            row["name_sv"], row["snomed_procedure"], row["icd10"], row["kva_group"], row["mvo"])
