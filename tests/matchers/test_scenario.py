from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from events.payloads import OfferPublished, Patient, RequestPublished
from matchers.scenario import ScenarioError, load_scenario, parse_scenario
from matchers.validation import Violation, check_offer, check_request

from .conftest import scenario_path

VALID: dict[str, Any] = {
    "name": "spring-cataract",
    "as_of": "2026-03-02",
    "agreements": [{"purchaser": "25", "provider": "01", "care_area": "cataract"}],
    "offers": [
        {
            "offer_id": "off-1",
            "region": "01",
            "unit_hsa_id": "SE2321000016-A1B2C",
            "care_area": "cataract",
            "capacity": 40,
            "window_start": "2026-03-09",
            "window_end": "2026-04-17",
            "price_sek": 9800,
        },
        {
            "offer_id": "off-2",
            "region": "13",
            "unit_hsa_id": "SE2321000115-XXXXX",
            "care_area": "cataract",
            "capacity": 5,
            "window_start": "2026-03-09",
            "window_end": "2026-04-17",
            "price_sek": 9100.5,
        },
    ],
    "requests": [
        {
            "request_id": "req-1",
            "region": "25",
            "care_area": "cataract",
            "window_start": "2026-03-02",
            "window_end": "2026-05-29",
            "max_price_sek": 12000,
            "max_travel_km": 1200,
            "excluded_regions": ["13"],
            "requires_agreement": False,
            "patients": [{"case_ref": "case-25-0001", "waiting_since": "2025-10-01"}],
        },
        {
            "request_id": "req-x",
            "region": "03",
            "care_area": "cataract",
            "window_start": "2026-03-02",
            "window_end": "2026-05-29",
            "max_price_sek": None,
            "max_travel_km": None,
            "excluded_regions": [],
            "requires_agreement": True,
            "patients": [
                {"case_ref": "case-03-1", "waiting_since": "2025-10-01"},
                {"case_ref": "case-03-2", "waiting_since": "2025-11-01"},
            ],
        },
    ],
}


def _broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    change(data)
    return data


def _violations(data: Any) -> list[Violation]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    return caught.value.violations


def test_a_valid_scenario_parses() -> None:
    s = parse_scenario(VALID)
    assert s.as_of == date(2026, 3, 2)
    assert [o.offer_id for o in s.offers] == ["off-1", "off-2"]
    assert s.offers[1].price_sek == 9100.5
    assert s.requests[0].excluded_regions == ("13",)
    assert s.requests[1].patients[1].waiting_since == date(2025, 11, 1)
    assert s.patient_count == 3


@pytest.mark.parametrize(
    ("change", "item", "field", "rule", "text"),
    [
        (
            lambda d: d["requests"][1]["patients"][0].update(waiting_since="yesterday"),
            "requests[1] (req-x).patients[0]",
            "waiting_since",
            "iso_date",
            "not an ISO date 'yesterday'",
        ),
        (lambda d: d.update(as_of="2026-02-30"), "scenario", "as_of", "iso_date", "not an ISO date"),
        (lambda d: d.update(as_of="20260302"), "scenario", "as_of", "iso_date", "not an ISO date"),
        (
            lambda d: d["offers"][1].update(region="99"),
            "offers[1] (off-2)",
            "region",
            "known_region",
            "unknown region code '99'",
        ),
        (
            lambda d: d["offers"][0].update(region=1),
            "offers[0] (off-1)",
            "region",
            "type",
            "expected a string",
        ),
        (
            lambda d: d["offers"][0].update(care_area="hip"),
            "offers[0] (off-1)",
            "care_area",
            "known_care_area",
            "unknown care area 'hip'",
        ),
        (
            lambda d: d["offers"][0].update(capacity=0),
            "offers[0] (off-1)",
            "capacity",
            "positive_capacity",
            "greater than 0",
        ),
        (
            lambda d: d["offers"][0].update(capacity=2.5),
            "offers[0] (off-1)",
            "capacity",
            "type",
            "expected an integer",
        ),
        (
            lambda d: d["offers"][0].update(capacity=True),
            "offers[0] (off-1)",
            "capacity",
            "type",
            "expected an integer",
        ),
        (
            lambda d: d["offers"][0].update(window_end="2026-03-01"),
            "offers[0] (off-1)",
            "window_end",
            "window_order",
            "before window_start",
        ),
        (lambda d: d["offers"][0].pop("price_sek"), "offers[0] (off-1)", "price_sek", "required", "missing"),
        (
            lambda d: d["offers"][0].update(price_sek="cheap"),
            "offers[0] (off-1)",
            "price_sek",
            "type",
            "expected a number",
        ),
        (
            lambda d: d["offers"][0].update(price_sek=-1),
            "offers[0] (off-1)",
            "price_sek",
            "non_negative",
            "must not be negative",
        ),
        (
            lambda d: d["offers"][1].update(offer_id="off-1"),
            "offers[1] (off-1)",
            "offer_id",
            "unique_id",
            "duplicate offer_id 'off-1' (first at offers[0] (off-1))",
        ),
        (
            lambda d: d["requests"][1].update(request_id="req-1"),
            "requests[1] (req-1)",
            "request_id",
            "unique_id",
            "duplicate request_id",
        ),
        (
            lambda d: d["requests"][1]["patients"][0].update(case_ref="case-25-0001"),
            "requests[1] (req-x).patients[0]",
            "case_ref",
            "unique_id",
            "duplicate case_ref 'case-25-0001'",
        ),
        (
            lambda d: d["requests"][0].update(excluded_regions=["13", "42"]),
            "requests[0] (req-1)",
            "excluded_regions[1]",
            "known_region",
            "unknown region code '42'",
        ),
        (
            lambda d: d["requests"][0].update(max_travel_km="far"),
            "requests[0] (req-1)",
            "max_travel_km",
            "type",
            "expected a number or null",
        ),
        (
            lambda d: d["requests"][0].update(requires_agreement="yes"),
            "requests[0] (req-1)",
            "requires_agreement",
            "type",
            "expected true or false",
        ),
        (
            lambda d: d["requests"][0].update(patients=[]),
            "requests[0] (req-1)",
            "patients",
            "required",
            "at least one patient",
        ),
        (
            lambda d: d["requests"][0].update(max_price=5),
            "requests[0] (req-1)",
            "max_price",
            "unknown_field",
            "unknown field",
        ),
        (
            lambda d: d["agreements"][0].update(provider="00"),
            "agreements[0]",
            "provider",
            "known_region",
            "unknown region code '00'",
        ),
        (lambda d: d.pop("offers"), "scenario", "offers", "required", "missing"),
        (lambda d: d["requests"].append("req"), "requests[2]", "", "type", "expected an object"),
    ],
)
def test_malformed_scenarios_name_item_field_and_rule(
    change: Any, item: str, field: str, rule: str, text: str
) -> None:
    found = _violations(_broken(change))
    assert any(v.item == item and v.field == field and v.rule == rule and text in v.message for v in found), (
        found
    )


def test_the_error_message_names_item_and_rule() -> None:
    data = _broken(lambda d: d["requests"][1]["patients"][0].update(waiting_since="yesterday"))
    with pytest.raises(
        ScenarioError,
        match=r"requests\[1\] \(req-x\)\.patients\[0\]\.waiting_since: "
        r"not an ISO date 'yesterday' \[iso_date\]",
    ):
        parse_scenario(data)


def test_all_violations_are_collected() -> None:
    def change(d: dict[str, Any]) -> None:
        d["offers"][0]["region"] = "99"
        d["requests"][0]["care_area"] = "hip"

    assert {v.rule for v in _violations(_broken(change))} == {"known_region", "known_care_area"}


def test_not_an_object() -> None:
    assert _violations([1, 2])[0].rule == "type"


def test_optional_fields_take_the_bus_defaults() -> None:
    def change(d: dict[str, Any]) -> None:
        del d["name"], d["agreements"]
        for key in ("max_price_sek", "max_travel_km", "excluded_regions", "requires_agreement"):
            del d["requests"][0][key]

    s = parse_scenario(_broken(change))
    r = s.requests[0]
    assert (s.name, s.agreements, r.max_price_sek, r.max_travel_km) == ("", (), None, None)
    assert (r.excluded_regions, r.requires_agreement) == ((), False)


def test_load_scenario_refuses_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ScenarioError, match=r"\[json\]"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=r"\[readable\]"):
        load_scenario(tmp_path / "absent.json")


def test_large_scenario_parses_whole() -> None:
    # How fast is measured by `./dev bench matching`, never asserted here (a shared machine is noisy).
    path = scenario_path("large")
    scenario = parse_scenario(json.loads(path.read_bytes()))
    assert scenario.patient_count == 50000


def test_domain_rules_apply_to_bus_payloads_too() -> None:
    offer = OfferPublished(
        offer_id="off-1",
        region="99",
        unit_hsa_id="SE2321000016-1",
        care_area="hip",
        capacity=3,
        window_start=date(2026, 3, 1),
        window_end=date(2026, 3, 31),
        price_sek=100,
    )
    assert [(v.field, v.rule) for v in check_offer(offer)] == [
        ("region", "known_region"),
        ("care_area", "known_care_area"),
    ]
    assert check_offer(offer)[0].item == "offer off-1"
    request = RequestPublished(
        request_id="req-1",
        region="01",
        care_area="cataract",
        window_start=date(2026, 3, 1),
        window_end=date(2026, 3, 31),
        excluded_regions=("03", "98"),
        patients=(Patient(case_ref="case-1", waiting_since=date(2025, 1, 1)),),
    )
    assert [(v.field, v.rule, v.message) for v in check_request(request)] == [
        ("excluded_regions[1]", "known_region", "unknown region code '98'")
    ]
