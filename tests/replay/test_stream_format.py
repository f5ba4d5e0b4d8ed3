"""The stream format: written and read back unchanged, generated the same from the same seed,
and bad input refused whole with the field and the rule named."""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import pytest

from demo_regions.campaign import spring_cataract_campaign
from marketplace.replay.generate import GeneratorOptions, generate_stream
from marketplace.replay.sandbox import SAMPLES, load_sample
from marketplace.replay.stream import (
    CaseWithdrawal,
    OfferArrival,
    RequestArrival,
    StreamError,
    parse_stream,
    scenario_json,
    stream_to_json,
)
from matchers.scenario import parse_scenario


def _stream_json(seed: int = 3, weeks: int = 4) -> dict:
    stream = generate_stream(spring_cataract_campaign(), GeneratorOptions(weeks=weeks, seed=seed, scale=0.3))
    return stream_to_json(stream)


def test_a_stream_reads_back_as_written() -> None:
    data = _stream_json()
    stream = parse_stream(data)
    assert stream_to_json(stream) == data
    assert stream.patient_count > 0 and stream.offers
    # Every patient carries the predicted breach date the generator gave them.
    assert all(p.breach_date is not None for r in stream.requests for p in r.patients)


def test_the_campaign_file_reads_back_as_the_campaign(tmp_path: Path) -> None:
    """`python -m demo_regions.campaign_file` writes the campaign the cataract sample is made from."""
    from demo_regions.campaign_file import main

    out = tmp_path / "spring.json"
    assert main([str(out)]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert parse_scenario(data) == spring_cataract_campaign()
    assert scenario_json(parse_scenario(data)) == data
    assert main([]) == 2


def test_the_generator_is_seeded() -> None:
    assert json.dumps(_stream_json(seed=3)) == json.dumps(_stream_json(seed=3))
    assert json.dumps(_stream_json(seed=3)) != json.dumps(_stream_json(seed=4))


def test_generated_arrivals_fall_in_the_weeks_and_windows_follow_publication() -> None:
    stream = parse_stream(_stream_json(weeks=4))
    for e in stream.events:
        assert stream.start <= e.at.date() <= stream.end
        if isinstance(e, OfferArrival):
            assert e.offer.window_start > e.at.date()
            assert (e.at.date() - stream.start).days < 4 * 7 + 3  # a weekend may push it to Monday
        if isinstance(e, RequestArrival):
            assert e.request.window_start == e.at.date()
    # At a rate that makes at least one certain in practice (at 3 % a small stream may have none).
    withdrawing = generate_stream(spring_cataract_campaign(),
                                  GeneratorOptions(weeks=12, seed=3, scale=0.3, case_withdrawal_rate=0.2))
    assert any(isinstance(e, CaseWithdrawal) for e in withdrawing.events)


def test_each_region_publishes_its_weekly_list_on_one_weekday() -> None:
    # Regions publish in batches (a home region's list of patients, a providing region's freed
    # capacity), not one arrival at a time: every offer and request of a region goes out at 08:00
    # on the same weekday.
    stream = generate_stream(spring_cataract_campaign(), GeneratorOptions(weeks=12, seed=3))
    days: dict[str, set[int]] = {}
    for e in stream.events:
        if isinstance(e, OfferArrival | RequestArrival):
            region = e.offer.region if isinstance(e, OfferArrival) else e.request.region
            days.setdefault(region, set()).add(e.at.isoweekday())
            assert (e.at.hour, e.at.minute) == (8, 0)
    assert days and all(len(weekdays) == 1 for weekdays in days.values())
    # A list carries several patients: fewer request arrivals than patients.
    assert len(stream.requests) < stream.patient_count / 2


@pytest.mark.parametrize("area", SAMPLES)
def test_the_shipped_samples_load(area: str) -> None:
    stream = load_sample(area)
    assert stream.care_areas == [area]
    assert stream.patient_count >= 100


def _broken(change) -> StreamError:
    data = _stream_json()
    data = copy.deepcopy(data)
    change(data)
    with pytest.raises(StreamError) as caught:
        parse_stream(data, "s.json")
    return caught.value


def test_bad_streams_are_refused_naming_field_and_rule() -> None:
    e = _broken(lambda d: d["behaviour"].update(no_show_rate=1.5))
    assert "behaviour.no_show_rate" in str(e) and "[rate]" in str(e)
    e = _broken(lambda d: d["events"][0].update(at="2026-03-02T08:00:00"))
    assert "events[0].at" in str(e) and "[timezone]" in str(e)
    e = _broken(lambda d: d["events"][0].update(at="2031-01-01T08:00:00+01:00"))
    assert "events[0].at" in str(e) and "[range]" in str(e)
    e = _broken(lambda d: d["events"].append({"at": d["events"][0]["at"], "type": "teleport"}))
    assert "type" in str(e)
    e = _broken(lambda d: d.update(version=2))
    assert "version" in str(e)
    e = _broken(lambda d: d["events"].append({"at": d["events"][0]["at"], "type": "withdraw_case",
                                              "case_ref": "case-nobody"}))
    assert "[reference]" in str(e)


def test_offers_and_requests_are_checked_by_the_scenario_contract() -> None:
    def bad_offer(d):
        offer = next(e for e in d["events"] if e["type"] == "offer")["offer"]
        offer["capacity"] = -3
        offer["region"] = "99"

    e = _broken(bad_offer)
    assert "capacity" in str(e) and "region" in str(e)
    assert len(e.problems) >= 2


def test_a_stream_of_another_kind_is_refused() -> None:
    with pytest.raises(StreamError, match="format"):
        parse_stream({"name": "x", "as_of": date(2026, 3, 2).isoformat(), "offers": [], "requests": []})
