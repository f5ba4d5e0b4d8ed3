"""The bus contract's bounds and identifier rules, as pure functions and pydantic models."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events import CaseCommandIssued, OfferPublished, RequestPublished, new_envelope
from events.bounds import MAX_CAPACITY, MAX_JSON_DEPTH, MAX_PATIENTS, MAX_PRICE_SEK, date_window, today
from events.envelope import EventParseError, decode_body, parse_envelope, stable_event_id
from events.identifiers import (
    CONSONANTS,
    check_event_id,
    holds_personal_number,
    is_identifier,
    is_personal_number,
    new_event_id,
    safe_token,
)
from events.payloads import ARG_CODES
from marketplace.lifecycle.reasons import PatientDeclineReason, ProviderDeclineReason, WithdrawalReason

# A valid personnummer (the Tax Agency's test series) and a samordningsnummer (day + 60).
PNR10, PNR12, SAMORDNING = "8507099805", "198507099805", "8507699802"


def _offer(**changes: Any) -> dict[str, Any]:
    start = today() + timedelta(days=10)
    data: dict[str, Any] = {"offer_id": "off-1", "region": "01", "unit_hsa_id": "SE2321000016-KT1",
                            "care_area": "cataract", "capacity": 10, "window_start": start.isoformat(),
                            "window_end": (start + timedelta(days=30)).isoformat(), "price_sek": 9800}
    return data | changes


def _rule(cls: Any, data: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        cls.model_validate(data)
    first = caught.value.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["type"]


def test_the_test_numbers_are_what_they_claim():
    assert is_personal_number(PNR10) and is_personal_number(PNR12) and is_personal_number(SAMORDNING)
    assert not is_personal_number("8507099806")


def _stdnum_only(number: str) -> bool:
    """The check as stdnum alone makes it, no quick refusal before it (the reference)."""
    from stdnum.exceptions import ValidationError as StdnumError
    from stdnum.se import personnummer

    if personnummer.is_valid(number):
        return True
    day_at = 4 if len(number) == 10 else 6
    day = int(number[day_at:day_at + 2])
    if not 61 <= day <= 91:
        return False
    try:
        personnummer.get_birth_date(f"{number[:day_at]}{day - 60:02d}{number[day_at + 2:]}")
    except StdnumError:
        return False
    from stdnum import luhn
    return bool(luhn.is_valid(number[-10:]))


@given(st.one_of(st.text(alphabet="0123456789", min_size=10, max_size=10),
                 st.text(alphabet="0123456789", min_size=12, max_size=12),
                 st.builds(lambda d, n, s: f"{d:%y%m}{d.day + s:02d}{n:04d}",
                           st.dates(min_value=date(1900, 1, 1), max_value=date(2029, 12, 31)),
                           st.integers(0, 9999), st.sampled_from([0, 60])),
                 st.builds(lambda d, n, s: f"{d:%Y%m}{d.day + s:02d}{n:04d}",
                           st.dates(min_value=date(1900, 1, 1), max_value=date(2029, 12, 31)),
                           st.integers(0, 9999), st.sampled_from([0, 60]))))
def test_the_quick_refusal_by_month_and_day_agrees_with_stdnum(number: str) -> None:
    assert is_personal_number(number) == _stdnum_only(number)


@pytest.mark.parametrize("value", [
    f"case-{PNR10}", "case-850709-9805", f"case-{PNR10[:5]}-{PNR10[5:]}", "case-8507b099805",
    f"case-{SAMORDNING[:4]}-{SAMORDNING[4:8]}-{SAMORDNING[8:]}", "case-anna-andersson", "anna-bcd",
    "off-A", "CASE-1", "case-", "case-1 2", "case-ö1", "x" * 70, "case-1234567", "case-000101-0-0008",
])
def test_identifiers_that_could_carry_identity_are_refused(value):
    assert not is_identifier(value)


@pytest.mark.parametrize("value", ["off-1", "case-3-0000-000", "req-k7x2-19q", "rnd-9fz4bq2m"])
def test_identifiers_of_the_pattern_pass(value):
    assert is_identifier(value)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2029, 12, 31)), st.integers(0, 999),
       st.sampled_from(["", "-", "b", "-0-"]), st.sampled_from(["case", "off", "req"]))
def test_no_valid_personnummer_fits_in_an_identifier(born, serial, sep, kind):
    digits = f"{born:%y%m%d}{serial:03d}"
    number = next(digits + str(d) for d in range(10) if is_personal_number(digits + str(d)))
    assert not is_identifier(f"{kind}-{number[:6]}{sep}{number[6:]}")
    assert not is_identifier(f"{kind}-{number[:4]}{sep}{number[4:7]}{sep}{number[7:]}")


@given(st.text(alphabet=CONSONANTS + "0123456789", min_size=1, max_size=40))
def test_the_identifier_alphabet_has_no_vowels_and_ids_made_from_it_pass_or_name_the_digit_rule(body):
    value = f"case-{body}"
    assert not set(body) & set("aeiouyåäö")
    if is_identifier(value):
        assert not holds_personal_number("".join(c for c in body if c.isdigit()))


@given(st.binary(min_size=1, max_size=64))
def test_tokens_made_from_any_seed_are_valid_ids(seed):
    assert is_identifier(f"off-{safe_token(seed, 12)}")


def test_event_ids_we_make_never_hold_a_personnummer():
    assert all(check_event_id(new_event_id()) for _ in range(2000))
    assert check_event_id(stable_event_id("x", 1))
    with pytest.raises(ValueError):
        check_event_id(uuid.UUID(f"{PNR12[:8]}-{PNR12[8:]}-4000-8000-000000000001"))


@pytest.mark.parametrize(("changes", "field", "rule"), [
    ({"capacity": MAX_CAPACITY + 1}, "capacity", "less_than_equal"),
    ({"capacity": 2**63}, "capacity", "less_than_equal"),
    ({"capacity": 0}, "capacity", "greater_than"),
    ({"price_sek": MAX_PRICE_SEK * 10}, "price_sek", "less_than_equal"),
    ({"price_sek": 1e308}, "price_sek", "less_than_equal"),
    ({"price_sek": -1}, "price_sek", "greater_than_equal"),
    ({"window_start": "0001-01-01"}, "window_start", "date_window"),
    ({"window_end": "9999-12-31"}, "window_end", "date_window"),
    ({"offer_id": "off-" + "b" * 70}, "offer_id", "string_too_long"),
    ({"offer_id": "Anna Andersson"}, "offer_id", "id_pattern"),
    ({"unit_hsa_id": f"SE{PNR10}-KT1"}, "unit_hsa_id", "no_personal_number"),
    ({"unit_hsa_id": "SE2321000016-ANNAANDERSSON"}, "unit_hsa_id", "string_too_long"),
])
def test_an_offer_out_of_bounds_is_refused_naming_field_and_rule(changes, field, rule):
    assert _rule(OfferPublished, _offer(**changes)) == (field, rule)


@given(st.integers())
def test_any_capacity_is_either_refused_or_fits_the_store(capacity):
    try:
        offer = OfferPublished.model_validate(_offer(capacity=capacity))
    except ValidationError:
        return
    # An int32 column and capacity x price as an exact float.
    assert 0 < offer.capacity < 2**31 and offer.capacity * offer.price_sek < 2**53


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_price_is_either_refused_or_fits_the_arithmetic(price):
    try:
        offer = OfferPublished.model_validate(_offer(price_sek=price))
    except ValidationError:
        return
    assert 0 <= offer.price_sek <= MAX_PRICE_SEK and offer.price_sek * MAX_CAPACITY < 2**53


@given(st.dates())
def test_any_date_is_either_refused_or_far_from_the_calendar_edge(day):
    try:
        offer = OfferPublished.model_validate(_offer(window_start=day.isoformat(), window_end=day.isoformat()))
    except ValidationError:
        return
    first, last = date_window()
    assert first <= offer.window_start <= last
    assert offer.window_start + timedelta(days=3650) < date.max and offer.window_start - timedelta(days=3650) > date.min


def test_a_request_with_too_many_patients_or_a_future_wait_is_refused():
    start = today() + timedelta(days=5)
    base = {"request_id": "req-1", "region": "01", "care_area": "cataract", "window_start": start.isoformat(),
            "window_end": (start + timedelta(days=30)).isoformat()}
    many = [{"case_ref": f"case-{n}", "waiting_since": "2026-01-01"} for n in range(MAX_PATIENTS + 1)]
    assert _rule(RequestPublished, base | {"patients": many}) == ("patients", "too_long")
    future = [{"case_ref": "case-1", "waiting_since": (today() + timedelta(days=3)).isoformat()}]
    assert _rule(RequestPublished, base | {"patients": future}) == ("patients.0.waiting_since", "not_in_future")


@pytest.mark.parametrize(("args", "rule"), [
    ({"note": "Anna Andersson called"}, "no_free_text"),
    ({"reason_code": "anna_andersson"}, "arg_shape"),
    ({"payment_ref": f"pay-{PNR10[:5]}-{PNR10[5:]}"}, "arg_shape"),
    ({"scheduled_for": "850709-9805"}, "arg_shape"),
    ({"amount_sek": 1e300}, "amount_range"),
])
def test_case_command_arguments_carry_no_free_text(args, rule):
    data = {"case_ref": "case-1", "command": "record_payment", "args": args}
    assert _rule(CaseCommandIssued, data)[1] == rule


def test_case_command_arguments_of_the_right_shape_pass():
    CaseCommandIssued(case_ref="case-1", command="record_payment",
                      args={"payment_ref": "pay-7k2", "amount_sek": 9800.5, "reason_code": "no_capacity",
                            "scheduled_for": "2026-12-01", "match_id": str(stable_event_id("m"))})


def test_every_lifecycle_reason_code_may_travel():
    for enum in (ProviderDeclineReason, PatientDeclineReason, WithdrawalReason):
        assert {m.value for m in enum} <= ARG_CODES


@pytest.mark.parametrize(("body", "rule"), [
    (b"[" * 100_000 + b"]" * 100_000, "json_depth"),
    (b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), "json_depth"),
    (b"\xff\xfe{}", "utf8"),
    (b'{"\\ud800": 1}', "utf8"),
    (b'{"price": NaN}', "json"),
    (b"not json", "json"),
    (b"[1, 2]", "object"),
])
def test_bodies_that_cannot_be_read_at_all_are_named(body, rule):
    with pytest.raises(EventParseError) as caught:
        decode_body(body)
    assert (caught.value.field, caught.value.rule) == ("body", rule)


def test_a_refused_envelope_never_repeats_what_the_sender_chose():
    envelope = json.loads(new_envelope(OfferPublished.model_validate(_offer()), producer="01").to_json())
    envelope["payload"]["anna_andersson"] = PNR10
    envelope["type"] = "offer.published"
    with pytest.raises(EventParseError) as caught:
        parse_envelope(json.dumps(envelope))
    assert caught.value.field == "payload.*" and caught.value.rule == "extra_forbidden"
    envelope["type"] = f"Anna Andersson {PNR10}"
    with pytest.raises(EventParseError) as caught:
        parse_envelope(json.dumps(envelope))
    said = " ".join(str(v) for v in vars(caught.value).values())
    assert "Anna" not in said and PNR10 not in said


def test_the_digest_is_the_same_for_a_redelivery_and_differs_for_other_content():
    envelope = new_envelope(OfferPublished.model_validate(_offer()), producer="01")
    again, _ = parse_envelope(envelope.to_json())
    assert again.digest() == envelope.digest()
    other = envelope.model_copy(update={"payload": {**envelope.payload, "capacity": 11}})
    assert other.digest() != envelope.digest()
