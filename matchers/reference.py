"""Reference data of the domain: the 21 regions, the care areas and the ancillary-cost tariff.

Read once from the package's own data files (never from a path outside the package) and cached.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

_DATA = "matchers.data"


@dataclass(frozen=True, slots=True)
class Region:
    code: str
    name: str
    org_number: str
    hub_city: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class CareArea:
    """A care area with its codes: SNOMED CT procedure, ICD-10 diagnoses, the KVÅ procedure-code
    groups and the MVO (medical specialty) code; `checked` notes where the codes come from."""

    code: str
    name_sv: str
    name_en: str
    snomed_procedure: str = ""
    icd10: tuple[str, ...] = ()
    kva_groups: tuple[str, ...] = ()
    mvo: str = ""
    checked: str = ""


@dataclass(frozen=True, slots=True)
class Tariff:
    """Ancillary costs (kringkostnader) of sending a patient to another region."""

    round_trips_per_patient: int
    per_km_sek: float
    overnight_threshold_km: float
    nights_when_over_threshold: int
    night_sek: float


def _read_text(name: str) -> str:
    return resources.files(_DATA).joinpath(name).read_text(encoding="utf-8")


@cache
def regions() -> dict[str, Region]:
    """Regions by two-digit code, in the file's order."""
    rows = csv.DictReader(io.StringIO(_read_text("regions.csv")))
    return {
        row["code"]: Region(
            code=row["code"],
            name=row["name"],
            org_number=row["org_number"],
            hub_city=row["hub_city"],
            lat=float(row["lat"]),
            lon=float(row["lon"]),
        )
        for row in rows
    }


@cache
def care_areas() -> dict[str, CareArea]:
    rows = csv.DictReader(io.StringIO(_read_text("care_areas.csv")))
    def codes(value: str | None) -> tuple[str, ...]:
        return tuple(c for c in (value or "").split(";") if c)

    return {
        row["care_area"]: CareArea(code=row["care_area"], name_sv=row["name_sv"], name_en=row["name_en"],
                                   snomed_procedure=row.get("snomed_procedure") or "", icd10=codes(row.get("icd10")),
                                   kva_groups=codes(row.get("kva_group")), mvo=row.get("mvo") or "",
                                   checked=row.get("checked") or "")
        for row in rows
    }


@cache
def default_tariff() -> Tariff:
    raw = json.loads(_read_text("tariff.json"))
    return Tariff(
        round_trips_per_patient=int(raw["round_trips_per_patient"]),
        per_km_sek=float(raw["per_km_sek"]),
        overnight_threshold_km=float(raw["overnight_threshold_km"]),
        nights_when_over_threshold=int(raw["nights_when_over_threshold"]),
        night_sek=float(raw["night_sek"]),
    )
