"""The policy sandbox on the shipped streams: every policy replayed through the lifecycle, the
report against the hindsight optimum, pre-breach publication, and the same report every time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from marketplace.lifecycle import CaseStatus, append_all, replay, verify
from marketplace.replay.engine import Replay
from marketplace.replay.policies import ONLINE, POLICIES
from marketplace.replay.report import render, write_charts, write_json
from marketplace.replay.sandbox import SAMPLES, SandboxRun, load_sample, run_sandbox
from matchers.incremental import OpenBook
from matchers.model import Offer, Patient, Request

PRE_BREACH_DAYS = 30
# With the weight, a patient whose breach is d <= 30 days away counts (31 - d) * 10 more wait days:
# one about to breach outranks anyone who has waited up to 310 days longer (the already breached
# backlog), so the capacity goes first to the breaches that can still be avoided (README).
PRE_BREACH_WEIGHT = 10


@pytest.fixture(scope="module", params=SAMPLES)
def sandbox(request: pytest.FixtureRequest) -> SandboxRun:
    return run_sandbox(load_sample(request.param), list(ONLINE), publish_before_breach=PRE_BREACH_DAYS,
                       breach_weight=PRE_BREACH_WEIGHT)


@pytest.mark.slow  # whole replays of the shipped streams
def test_every_policy_is_replayed_and_reported(sandbox: SandboxRun) -> None:
    labels = [r.label for r in sandbox.report.rows]
    assert labels[:5] == list(ONLINE)
    assert labels[5:] == [f"{p}+pre{PRE_BREACH_DAYS}d" for p in ONLINE]
    h = sandbox.report.hindsight
    for row in sandbox.report.rows:
        m = row.metrics
        # No online policy beats the hindsight optimum on patients placed.
        assert 0 < m.placed <= h.placed
        assert row.to_hindsight["placed"] == round(m.placed / h.placed, 4)
        assert m.match_days_median <= m.match_days_p90
        assert m.capacity_unused >= 0 and m.procedure_sek > 0
    assert sandbox.report.row("fcfs").to_fcfs["placed"] == 1.0


@pytest.mark.slow  # whole replays of the shipped streams
def test_continuous_optimal_places_nearly_what_hindsight_does_and_waits_least(sandbox: SandboxRun) -> None:
    report = sandbox.report
    continuous = report.row("continuous").metrics
    assert continuous.placed >= 0.98 * report.hindsight.placed
    assert continuous.wait_days < report.row("monthly").metrics.wait_days
    assert continuous.wait_days < report.row("weekly").metrics.wait_days


@pytest.mark.slow  # whole replays of the shipped streams
def test_continuous_optimal_and_first_come_first_served_wait_alike(sandbox: SandboxRun) -> None:
    # Not fewer wait-days than FCFS: both place as many patients in (nearly) every round, and
    # total wait-days depend only on how many are placed when, not on who (README). What differs
    # is who gets which slot, and so which parties decline: within 1 % either way.
    continuous = sandbox.report.row("continuous").metrics
    fcfs = sandbox.report.row("fcfs").metrics
    assert continuous.placed == fcfs.placed
    assert abs(continuous.wait_days - fcfs.wait_days) <= 0.01 * fcfs.wait_days


@pytest.mark.slow  # whole replays of the shipped streams
def test_publishing_before_the_breach_reduces_breaches(sandbox: SandboxRun) -> None:
    before = sandbox.report.row("continuous").metrics
    after = sandbox.report.row(f"continuous+pre{PRE_BREACH_DAYS}d").metrics
    assert after.breaches < before.breaches
    assert after.placed >= before.placed


def test_cases_go_through_the_lifecycle() -> None:
    result = Replay(load_sample("inguinal-hernia"), POLICIES["continuous"]).run()
    statuses = Counter(r.state.status for r in result.cases.values())
    assert statuses[CaseStatus.PERFORMED] == sum(1 for r in result.cases.values() if r.placed_at)
    assert set(statuses) <= {CaseStatus.PERFORMED, CaseStatus.EXPIRED, CaseStatus.WITHDRAWN, CaseStatus.ON_BOOK}
    # Declines and lapsed holds happened, and their slots went back to the book.
    assert any(len(r.proposed) > 1 for r in result.cases.values())
    assert all(r.state.excluded_offer_ids >= set(r.proposed[:-1]) for r in result.cases.values() if r.placed_at)
    assert any(r.breach_warned for r in result.cases.values())


def test_continuous_rounds_read_only_what_changed() -> None:
    result = Replay(load_sample("cataract"), POLICIES["continuous"]).run()
    patients = len(result.cases)
    # A full re-solve would read every waiting patient each round.
    full = sum(s.waiting for s in result.series)  # a lower bound of it: once a day, not every round
    assert result.round_patients < full
    assert result.rounds > patients / 3


@pytest.mark.slow  # whole replays of the shipped streams
def test_same_seed_same_report(tmp_path: Path) -> None:
    outputs = []
    for i in range(2):
        run = run_sandbox(load_sample("knee-replacement"), ["continuous", "fcfs", "weekly"], publish_before_breach=14)
        console = Console(record=True, width=160, file=open(tmp_path / f"table{i}.txt", "w"))  # noqa: SIM115
        render(run.report, console)
        console.file.close()
        write_json(run.report, tmp_path / f"report{i}.json")
        write_charts(run.report, run.results, tmp_path / f"charts{i}.png")
        outputs.append(((tmp_path / f"table{i}.txt").read_bytes(), (tmp_path / f"report{i}.json").read_bytes(),
                        (tmp_path / f"charts{i}.png").read_bytes()))
    assert outputs[0] == outputs[1]
    table, report, png = outputs[0]
    assert b"hindsight optimum" in table and b"breaches" in table
    assert json.loads(report)["policies"][0]["label"] == "continuous"
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_replayed_case_is_its_lifecycle_history() -> None:
    # The replay keeps each case by the lifecycle's own decide/evolve: its events, folded from
    # scratch, give the state it ended in, and hash-chain into a timeline like the live one's.
    result = Replay(load_sample("knee-replacement"), POLICIES["daily"], keep_history=True).run()
    for record in result.cases.values():
        assert record.history is not None
        assert replay(record.history) == record.state
    placed = next(r for r in result.cases.values() if r.placed_at)
    assert placed.history is not None
    types = [e.TYPE for e in placed.history]
    assert types[:2] == ["case.need_identified", "case.placed_on_book"]
    assert types.index("case.match_held") < types.index("case.patient_accepted_offer") < types.index(
        "case.care_performed")
    assert verify(append_all([], placed.history)).ok


def test_a_returned_slot_reads_the_longest_waiters_not_every_request_class() -> None:
    # A book like a large stream's: many small requests (each region's weekly lists), one slot.
    # The slot comes back (a declined proposal): the next round reads the one longest waiter who
    # may take it, not one patient of every request class (which made large streams crawl).
    start = date(2026, 3, 2)
    book = OpenBook()
    book.add_offer(Offer("off-1", "01", "SE-1", "cataract", 1, start, start + timedelta(days=30), 9000))
    for i in range(200):
        book.add_patients(Request(f"req-{i:03d}", "03", "cataract", start, start + timedelta(days=90), None, None,
                                  (), False, (Patient(f"case-{i:03d}", start - timedelta(days=i)),)))
    first = book.clear(start)
    assert [p.case_ref for p in first.placements if p.placed] == ["case-199"]
    book.return_slots("off-1")
    again = book.clear(start + timedelta(days=1))
    assert book.last_round.patients == 1
    assert [p.case_ref for p in again.placements if p.placed] == ["case-198"]
