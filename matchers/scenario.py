"""Scenario files (`contract/SCENARIOS.md`): parse and validate a whole book, or refuse it.

A file that breaks any rule is refused as a whole with a `ScenarioError` listing every violation,
each naming the offending item and the rule; nothing is half-loaded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.validation import Violation, check_agreement, check_offer, check_request, unique_ids

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_REGION_CODE = re.compile(r"\d{2}")
_MISSING = object()

_OFFER_FIELDS = (
    "offer_id", "region", "unit_hsa_id", "care_area", "capacity", "window_start", "window_end", "price_sek",
)  # fmt: skip
_REQUEST_FIELDS = (
    "request_id", "region", "care_area", "window_start", "window_end", "max_price_sek", "max_travel_km",
    "excluded_regions", "requires_agreement", "patients",
)  # fmt: skip
_PATIENT_FIELDS = ("case_ref", "waiting_since")
_AGREEMENT_FIELDS = ("purchaser", "provider", "care_area")
_TOP_FIELDS = ("name", "as_of", "agreements", "offers", "requests")
# The bus contract (events.payloads.RequestPublished) has the same defaults.
_REQUEST_DEFAULTS: dict[str, Any] = {
    "max_price_sek": None, "max_travel_km": None, "excluded_regions": [], "requires_agreement": False,
}  # fmt: skip


class ScenarioError(ValueError):
    """A scenario that breaks the contract. `violations` holds every problem found."""

    SHOWN = 20

    def __init__(self, violations: list[Violation], source: str = "") -> None:
        self.violations = violations
        self.source = source
        head = f"invalid scenario {source}: " if source else "invalid scenario: "
        lines = [str(v) for v in violations[: self.SHOWN]]
        if len(violations) > self.SHOWN:
            lines.append(f"... and {len(violations) - self.SHOWN} more")
        noun = "violation" if len(violations) == 1 else "violations"
        super().__init__(head + f"{len(violations)} {noun}\n  " + "\n  ".join(lines))


class _Item:
    """Reads the fields of one JSON object, recording a violation for each bad field."""

    __slots__ = ("data", "label", "out")

    def __init__(self, data: Any, label: str, out: list[Violation], fields: tuple[str, ...]) -> None:
        self.label = label
        self.out = out
        if not isinstance(data, dict):
            out.append(Violation(label, "", "type", f"expected an object, got {_kind(data)}"))
            self.data: dict[str, Any] = {}
            return
        self.data = data
        for key in data:
            if key not in fields:
                out.append(Violation(label, str(key), "unknown_field", f"unknown field {key!r}"))

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if default is not _MISSING:
                return default
            self.out.append(Violation(self.label, key, "required", "required field is missing"))
        return value

    def _bad(self, key: str, rule: str, message: str) -> object:
        self.out.append(Violation(self.label, key, rule, message))
        return _MISSING

    def text(self, key: str, default: Any = _MISSING, allow_empty: bool = False) -> Any:
        value = self._get(key, default)
        if value is _MISSING or (isinstance(value, str) and (value or allow_empty)):
            return value
        if isinstance(value, str):
            return self._bad(key, "required", "must not be empty")
        return self._bad(key, "type", f"expected a string, got {_kind(value)}")

    def region(self, key: str) -> Any:
        value = self.text(key)
        if value is _MISSING or _REGION_CODE.fullmatch(value):
            return value
        return self._bad(key, "type", f"not a two-digit region code {value!r}")

    def integer(self, key: str) -> Any:
        value = self._get(key, _MISSING)
        if value is _MISSING or type(value) is int:
            return value
        return self._bad(key, "type", f"expected an integer, got {_kind(value)}")

    def number(self, key: str, default: Any = _MISSING, nullable: bool = False) -> Any:
        value = self._get(key, default)
        if value is _MISSING or (value is None and nullable):
            return value
        if type(value) in (int, float) and math.isfinite(value):
            return value
        return self._bad(
            key, "type", f"expected a number{' or null' if nullable else ''}, got {_kind(value)}"
        )

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is _MISSING or isinstance(value, bool):
            return value
        return self._bad(key, "type", f"expected true or false, got {_kind(value)}")

    def day(self, key: str, dates: dict[str, date]) -> Any:
        value = self._get(key, _MISSING)
        if value is _MISSING:
            return value
        if isinstance(value, str):
            # Thousands of patients share a few hundred dates; parse each spelling once.
            parsed = dates.get(value)
            if parsed is not None:
                return parsed
            if _ISO_DATE.fullmatch(value):
                try:
                    parsed = dates[value] = date.fromisoformat(value)
                    return parsed
                except ValueError:
                    pass
        return self._bad(key, "iso_date", f"not an ISO date {value!r}")

    def array(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is _MISSING or isinstance(value, list):
            return value
        return self._bad(key, "type", f"expected an array, got {_kind(value)}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: f"the string {value!r}",
            list: "an array", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


def _complete(*values: Any) -> bool:
    return all(v is not _MISSING for v in values)


def _label(kind: str, index: int, data: Any, id_key: str) -> str:
    ident = data.get(id_key) if isinstance(data, dict) else None
    return f"{kind}[{index}] ({ident})" if isinstance(ident, str) else f"{kind}[{index}]"


def _offer(data: Any, label: str, out: list[Violation], dates: dict[str, date]) -> Offer | None:
    it = _Item(data, label, out, _OFFER_FIELDS)
    values = (
        it.text("offer_id"), it.region("region"), it.text("unit_hsa_id"), it.text("care_area"),
        it.integer("capacity"), it.day("window_start", dates), it.day("window_end", dates),
        it.number("price_sek"),
    )  # fmt: skip
    if not _complete(*values):
        return None
    offer = Offer(*values)
    found = check_offer(offer, label)
    out.extend(found)
    return None if found else offer


def _patient(data: Any, label: str, out: list[Violation], dates: dict[str, date]) -> Patient | None:
    it = _Item(data, label, out, _PATIENT_FIELDS)
    case_ref, waiting_since = it.text("case_ref"), it.day("waiting_since", dates)
    return Patient(case_ref, waiting_since) if _complete(case_ref, waiting_since) else None


def _well_formed_patient(data: Any, dates: dict[str, date]) -> Patient | None:
    """The common case without the per-field bookkeeping: exactly the two fields, a non-empty
    case_ref and a date already parsed once. Anything else goes through `_patient`."""
    if type(data) is dict and len(data) == 2:
        case_ref, since = data.get("case_ref"), data.get("waiting_since")
        if type(case_ref) is str and case_ref and type(since) is str:
            day = dates.get(since)
            if day is not None:
                return Patient(case_ref, day)
    return None


def _request(data: Any, label: str, out: list[Violation], dates: dict[str, date]) -> Request | None:
    it = _Item(data, label, out, _REQUEST_FIELDS)
    d = _REQUEST_DEFAULTS
    request_id, region, care_area = it.text("request_id"), it.region("region"), it.text("care_area")
    start, end = it.day("window_start", dates), it.day("window_end", dates)
    max_price = it.number("max_price_sek", d["max_price_sek"], nullable=True)
    max_travel = it.number("max_travel_km", d["max_travel_km"], nullable=True)
    requires_agreement = it.boolean("requires_agreement", d["requires_agreement"])
    excluded_raw, patients_raw = it.array("excluded_regions", d["excluded_regions"]), it.array("patients")
    excluded: list[str] = []
    if excluded_raw is not _MISSING:
        for i, code in enumerate(excluded_raw):
            if isinstance(code, str) and _REGION_CODE.fullmatch(code):
                excluded.append(code)
            else:
                out.append(
                    Violation(label, f"excluded_regions[{i}]", "type", f"not a region code: {_kind(code)}")
                )
    patients: list[Patient | None] = []
    if patients_raw is not _MISSING:
        if not patients_raw:
            out.append(Violation(label, "patients", "required", "a request needs at least one patient"))
        patients = [_well_formed_patient(p, dates) or _patient(p, f"{label}.patients[{i}]", out, dates)
                    for i, p in enumerate(patients_raw)]
    values = (
        request_id,
        region,
        care_area,
        start,
        end,
        max_price,
        max_travel,
        requires_agreement,
        patients_raw,
    )
    if not _complete(*values) or None in patients or len(excluded) != len(excluded_raw):
        return None
    request = Request(
        request_id=request_id, region=region, care_area=care_area, window_start=start, window_end=end,
        max_price_sek=max_price, max_travel_km=max_travel, excluded_regions=tuple(excluded),
        requires_agreement=requires_agreement, patients=tuple(p for p in patients if p is not None),
    )  # fmt: skip
    found = check_request(request, label)
    out.extend(found)
    return None if found else request


def _agreement(data: Any, label: str, out: list[Violation]) -> Agreement | None:
    it = _Item(data, label, out, _AGREEMENT_FIELDS)
    values = (it.region("purchaser"), it.region("provider"), it.text("care_area"))
    if not _complete(*values):
        return None
    agreement = Agreement(*values)
    found = check_agreement(agreement, label)
    out.extend(found)
    return None if found else agreement


def _items(raw: Any, kind: str, id_key: str, parse: Callable[[Any, str], Any]) -> list[Any]:
    return [parse(data, _label(kind, i, data, id_key)) for i, data in enumerate(raw)]


def parse_scenario(data: Any, source: str = "") -> Scenario:
    """Build a `Scenario` from decoded JSON, or raise `ScenarioError` with every violation."""
    out: list[Violation] = []
    dates: dict[str, date] = {}
    top = _Item(data, "scenario", out, _TOP_FIELDS)
    name = top.text("name", "", allow_empty=True)
    as_of = top.day("as_of", dates)
    agreements_raw, offers_raw = top.array("agreements", []), top.array("offers")
    requests_raw = top.array("requests")
    agreements = (
        []
        if agreements_raw is _MISSING
        else [_agreement(a, f"agreements[{i}]", out) for i, a in enumerate(agreements_raw)]
    )
    offers = [] if offers_raw is _MISSING else _items(
        offers_raw, "offers", "offer_id", lambda d, lab: _offer(d, lab, out, dates)
    )  # fmt: skip
    requests = [] if requests_raw is _MISSING else _items(
        requests_raw, "requests", "request_id", lambda d, lab: _request(d, lab, out, dates)
    )  # fmt: skip
    out += unique_ids("offer_id", "offer_id", _ids(offers_raw, "offers", "offer_id"))
    out += unique_ids("request_id", "request_id", _ids(requests_raw, "requests", "request_id"))
    out += unique_ids("case_ref", "case_ref", _case_refs(requests_raw))
    if out:
        raise ScenarioError(out, source)
    return Scenario(
        name=name or "",
        as_of=as_of,
        agreements=tuple(a for a in agreements if a is not None),
        offers=tuple(o for o in offers if o is not None),
        requests=tuple(r for r in requests if r is not None),
    )


def _ids(raw: Any, kind: str, id_key: str) -> list[tuple[str, str]]:
    if raw is _MISSING:
        return []
    return [
        (f"{kind}[{i}] ({d[id_key]})", d[id_key])
        for i, d in enumerate(raw)
        if isinstance(d, dict) and isinstance(d.get(id_key), str)
    ]


def _case_refs(requests_raw: Any) -> list[tuple[str, str]]:
    if requests_raw is _MISSING:
        return []
    refs = [p.get("case_ref") for r in requests_raw if isinstance(r, dict) and isinstance(r.get("patients"), list)
            for p in r["patients"] if isinstance(p, dict) and isinstance(p.get("case_ref"), str)]
    if len(set(refs)) == len(refs):
        return []  # no duplicate: no need to label 50 000 patients for a check that passes
    pairs: list[tuple[str, str]] = []
    for i, r in enumerate(requests_raw):
        patients = r.get("patients") if isinstance(r, dict) else None
        if not isinstance(patients, list):
            continue
        label = _label("requests", i, r, "request_id")
        for j, p in enumerate(patients):
            if isinstance(p, dict) and isinstance(p.get("case_ref"), str):
                pairs.append((f"{label}.patients[{j}]", p["case_ref"]))
    return pairs


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; `ScenarioError` when it is not valid JSON or breaks a rule."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(
            [Violation(str(path), "", "readable", f"cannot read the file: {exc}")], str(path)
        ) from exc
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError([Violation(str(path), "", "json", f"not valid JSON: {exc}")], str(path)) from exc
    return parse_scenario(data, str(path))
