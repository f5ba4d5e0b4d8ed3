"""Reading the agreements file a region exports: semicolon-separated UTF-8, with or without a BOM.

Each row is one agreement as the region has signed it, checked completely (structure, reference
data, HSA-id) before anything is sent: a bad row is reported with its line number, its column and
the rule it broke, and the other rows still go. A good row becomes an `agreement.registered` with
the row's terms and an event id derived from its content, so the same file twice sends the same
events (the intake's inbox drops them) and a changed row sends a new one (a new version).

Columns (the first line names them; their order is free; other columns are ignored):

    avtals_id;köpare;utförare;hsa_id;enhet;vårdområden;giltig_från;giltig_till;pris_sek;prisvillkor;
    enhet_telefon;enhet_epost;enhet_adress;region_kontakt;region_telefon;region_epost

`vårdområden` lists care-area codes separated by commas; `giltig_till` may be empty (until ended);
`pris_sek` may use a decimal comma and spaces between thousands ("9 800,00").
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

from events import AgreementRegistered, Envelope, new_envelope
from events.envelope import stable_event_id
from marketplace.agreements.rules import check_terms

COLUMNS = ("avtals_id", "köpare", "utförare", "hsa_id", "enhet", "vårdområden", "giltig_från", "giltig_till",
           "pris_sek", "prisvillkor", "enhet_telefon", "enhet_epost", "enhet_adress", "region_kontakt",
           "region_telefon", "region_epost")
REQUIRED = ("avtals_id", "köpare", "utförare", "hsa_id", "enhet", "vårdområden", "giltig_från", "pris_sek",
            "region_kontakt")
MAX_BYTES = 20_000_000
MAX_ROWS = 50_000

# Where a field of the payload comes from in the file: a refusal names the column the user edits.
_COLUMN_OF = {
    "agreement_id": "avtals_id", "purchaser": "köpare", "terms.provider": "utförare",
    "terms.unit_hsa_id": "hsa_id", "terms.unit_name": "enhet", "terms.care_areas": "vårdområden",
    "terms.valid_from": "giltig_från", "terms.valid_to": "giltig_till", "terms.price_sek": "pris_sek",
    "terms.price_terms": "prisvillkor", "terms.unit_contact.phone": "enhet_telefon",
    "terms.unit_contact.email": "enhet_epost", "terms.unit_contact.address": "enhet_adress",
    "terms.unit_contact.name": "enhet", "terms.region_contact.name": "region_kontakt",
    "terms.region_contact.phone": "region_telefon", "terms.region_contact.email": "region_epost",
}
_SPACES = re.compile(r"[\s\u00a0\u202f]")


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int  # 1-based line of the file where the row starts (the header is line 1)
    column: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message} [{self.rule}]"


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    agreement_id: str
    envelope: Envelope


@dataclass
class ImportPlan:
    rows: list[ImportRow] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, header): nothing of it is sent."""


def _column(loc: str) -> str:
    for prefix in sorted(_COLUMN_OF, key=len, reverse=True):
        if loc == prefix or loc.startswith(prefix + "."):
            return _COLUMN_OF[prefix]
    return loc


def _price(text: str) -> float | str:
    cleaned = _SPACES.sub("", text).replace(",", ".")
    try:
        return float(cleaned)
    except ValueError:
        return text  # pydantic names it: not a number


def _day(text: str) -> date | str | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return text  # pydantic names it: not a date (YYYY-MM-DD)


def _payload_fields(row: dict[str, str]) -> dict[str, Any]:
    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    def contact(name: str, phone: str, email: str, address: str = "") -> dict[str, Any]:
        return {"name": get(name), "phone": get(phone) or None, "email": get(email) or None,
                "address": get(address) if address else ""}

    return {
        "agreement_id": get("avtals_id"), "purchaser": get("köpare"),
        "terms": {
            "provider": get("utförare"), "unit_hsa_id": get("hsa_id"), "unit_name": get("enhet"),
            "care_areas": tuple(a.strip() for a in get("vårdområden").split(",") if a.strip()),
            "valid_from": _day(get("giltig_från")), "valid_to": _day(get("giltig_till")),
            "price_sek": _price(get("pris_sek")), "price_terms": get("prisvillkor"),
            "unit_contact": contact("enhet", "enhet_telefon", "enhet_epost", "enhet_adress"),
            "region_contact": contact("region_kontakt", "region_telefon", "region_epost"),
        },
    }


def _rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=";")
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
    if missing:
        raise ImportFileError(f"line 1: the header lacks the column(s) {', '.join(missing)} "
                              f"(expected {';'.join(COLUMNS)})")
    start = reader.line_num + 1
    for row in reader:
        if any((v or "").strip() for k, v in row.items() if k is not None):
            yield start, row
        start = reader.line_num + 1


def decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise ImportFileError(f"the file is larger than {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8-sig")  # a BOM, if the exporting system wrote one, is dropped
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ImportFileError(f"line {line}: the file is not UTF-8 (byte {exc.start}); "
                              "export it as UTF-8 (with or without BOM)") from exc


def plan_import(data: bytes, importer: str) -> ImportPlan:
    """Check every row of the file and build the events for the good ones, sent as `importer`
    (the region whose file it is: every row's köpare must be that region)."""
    plan = ImportPlan()
    first_line: dict[str, int] = {}
    for count, (line, row) in enumerate(_rows(decode(data)), 1):
        if count > MAX_ROWS:
            raise ImportFileError(f"line {line}: more than {MAX_ROWS} rows; split the file")
        if None in row:
            plan.problems.append(RowProblem(line, "-", "column_count", "the row has more fields than the header"))
            continue
        try:
            payload = AgreementRegistered.model_validate(_payload_fields(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            plan.problems.append(RowProblem(line, _column(loc), err["type"], err["msg"]))
            continue
        assert payload.agreement_id is not None and payload.terms is not None  # the row form has both
        violations = check_terms(payload.purchaser, payload.terms)
        if violations:
            v = violations[0]
            plan.problems.append(RowProblem(line, _column(v.field), v.rule, v.message))
            continue
        if payload.purchaser != importer:
            plan.problems.append(RowProblem(line, "köpare", "purchaser_is_importer",
                                            f"region {importer} may import only its own agreements, "
                                            f"not region {payload.purchaser}'s"))
            continue
        if payload.agreement_id in first_line:
            plan.problems.append(RowProblem(line, "avtals_id", "unique_id",
                                            f"agreement {payload.agreement_id!r} is already on line "
                                            f"{first_line[payload.agreement_id]}"))
            continue
        first_line[payload.agreement_id] = line
        content = payload.model_dump_json()
        envelope = new_envelope(payload, producer=importer,
                                event_id=stable_event_id("agreement-import", importer, content))
        plan.rows.append(ImportRow(line, payload.agreement_id, envelope))
    return plan
