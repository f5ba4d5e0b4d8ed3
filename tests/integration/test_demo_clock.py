"""The demo tells a campaign's story on a simulated clock: after `nvf demo`, `nvf stats` shows lead
times in days that match the parties' play, timelines carry the lapsed holds and the patients'
declines, and the cases the play let run past their guarantee date carry the sweeper's warnings."""

from __future__ import annotations

import io
import statistics
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlmodel import col, select

from demo_regions.campaign import AS_OF, spring_cataract_campaign
from demo_regions.clock import SimulatedClock, working_morning
from demo_regions.plans import CARRIED, HOLD_EXPIRES, PATIENT_DECLINES, fates, plan_case
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import CaseEventRow
from marketplace.entrypoints.commands.lifecycle import _market_stats
from marketplace.entrypoints.demo import render_summary, run_demo
from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date


def test_the_clock_starts_on_a_working_morning_and_never_goes_back():
    saturday = date(2026, 3, 7)
    clock = SimulatedClock.campaign(saturday)
    assert clock().astimezone(SWEDISH_TIME).replace(tzinfo=None) == datetime(2026, 3, 9, 8, 0)
    start = clock()
    clock.advance_to(start - timedelta(hours=1))
    assert clock() == start
    assert clock.advance(timedelta(days=3)) == start + timedelta(days=3)
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))


def test_each_case_has_its_own_realistic_schedule():
    matched = working_morning(AS_OF) + timedelta(hours=4)
    hold = matched + timedelta(hours=48)
    plans = [plan_case(f"case-{i:04d}", CARRIED, matched, hold) for i in range(60)]
    for plan in plans:
        at = {a.step: a.at for a in plan.actions}
        assert [a.at for a in plan.actions] == sorted(a.at for a in plan.actions)
        assert matched < at["accept_match"] < hold
        assert at["record_patient_answer"] < at["accept_match"] + timedelta(days=5)
        assert plan.scheduled_for is not None and plan.scheduled_for.weekday() < 5
        assert 14 <= (plan.scheduled_for - swedish_date(at["referral"])).days <= 44
        assert swedish_date(at["record_performed"]) == plan.scheduled_for
        assert timedelta(days=5) <= at["payment"] - at["invoice"] <= timedelta(days=33)
    # Per case, not one delay for all.
    assert len({p.scheduled_for for p in plans}) > 10
    assert plan_case("case-0001", CARRIED, matched, hold) == plans[1]  # deterministic
    lapsing = plan_case("case-x", HOLD_EXPIRES, matched, hold)
    assert [a.step for a in lapsing.actions] == ["hold_expired"] and lapsing.actions[0].at > hold
    counts: dict[str, int] = defaultdict(int)
    for fate in fates([f"c{i}" for i in range(40)]).values():
        counts[fate] += 1
    assert counts == {"provider_declines": 5, "hold_expires": 4, "patient_declines": 4, "carried": 27}


async def _timelines(database) -> dict[str, list[Any]]:
    async with database.session() as session:
        rows = (await session.exec(select(CaseEventRow).order_by(col(CaseEventRow.case_ref),
                                                                 col(CaseEventRow.version)))).all()
    out: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        out[row.case_ref].append(row)
    return out


def _when(row: Any) -> datetime:
    return row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=UTC)


@pytest.mark.integration
async def test_after_a_demo_stats_show_the_campaign_as_played(settings, database, redis_client):
    shown = io.StringIO()
    result = await run_demo(settings, settings.redis_url or "", spring_cataract_campaign(),
                            console=Console(file=shown, width=200))
    play, clock = result.play, result.clock
    assert play is not None and clock is not None and play.started_at is not None
    assert swedish_date(play.started_at) == AS_OF
    # Months of campaign, not seconds: the last payments come weeks after the last care.
    end = swedish_date(clock())
    assert (end - AS_OF).days > 60
    assert play.settled == sorted(play.carried) and len(play.carried) == 27

    stats = await _market_stats(settings, end)
    overall = stats.overall
    assert overall is not None
    lead = overall.lead_times
    # The regions list their needs at 08:00, the round clears at noon.
    assert lead.need_to_match.median_days == pytest.approx(4 / 24)
    # match -> referral: provider answer, offer, the patient's days, the next working day.
    assert lead.match_to_referral.count == len(play.carried)
    assert 2 <= lead.match_to_referral.median_days <= 10
    # referral -> performed: the day each case was booked, 2 to 6 weeks out, as the play planned it.
    planned = [float((p.scheduled_for - swedish_date(next(a.at for a in p.actions if a.step == "referral"))).days)
               for ref, p in play.plans.items() if ref in play.carried and p.scheduled_for is not None]
    assert lead.referral_to_performed.count == len(planned)
    assert lead.referral_to_performed.median_days == statistics.median(planned)
    assert 14 <= lead.referral_to_performed.median_days <= 44
    assert overall.per_state["settled"] == len(play.settled)

    timelines = await _timelines(database)
    # Every event of a played case is stamped at the moment the play took its action.
    for ref in play.carried:
        entries = {row.event_type: _when(row) for row in timelines[ref]}
        steps = {a.step: a.at for a in play.plans[ref].actions}
        assert entries["case.provider_accepted_match"] == steps["accept_match"]
        assert entries["case.referral_sent"] == steps["referral"]
        assert entries["case.care_performed"] == steps["record_performed"]
        assert entries["case.settled"] == steps["payment"]
    # The providers that never answered: the sweeper lapsed each hold at its deadline.
    assert play.expired
    for ref in play.expired:
        lapsed = [row for row in timelines[ref] if row.event_type == "case.hold_expired"]
        held = next(row for row in timelines[ref] if row.event_type == "case.match_held")
        assert lapsed and timedelta(hours=48) <= _when(lapsed[0]) - _when(held) < timedelta(hours=49)
    assert play.patient_declined and all(
        any(row.event_type == "case.patient_declined_offer" for row in timelines[ref]) for ref in play.patient_declined)
    assert all(play.plans[ref].fate == PATIENT_DECLINES for ref in play.patient_declined)

    # Cases the play let run past their guarantee date got the sweeper's breach warning, dated on
    # the first day past it (or at the clearing, for a case already late then); the others none.
    assert play.late
    for ref in play.carried:
        warnings = [row for row in timelines[ref] if row.event_type == "case.guarantee_warning_raised"]
        breach = [row for row in warnings if row.payload["days_left"] == -1]
        if ref in play.late:
            assert len(breach) == 1
            guarantee = date.fromisoformat(breach[0].payload["guarantee_date"])
            assert swedish_date(_when(breach[0])) == max(guarantee + timedelta(days=1), AS_OF)
        else:
            assert breach == []
    # And the warnings of the cases still waiting came as the simulated days passed, each on its day.
    later = [row for rows in timelines.values() for row in rows
             if row.event_type == "case.guarantee_warning_raised" and swedish_date(_when(row)) > AS_OF]
    assert {row.payload["days_left"] for row in later} >= {14, 7, -1}
    assert all(swedish_date(_when(row)) == date.fromisoformat(row.payload["due_on"]) for row in later)
    # No message waited past its receipt deadline on the simulated clock.
    async with database.session() as session:
        escalated = (await session.exec(select(SecureMessageRow.message_id)
                                        .where(col(SecureMessageRow.escalated_at).is_not(None)))).all()
    assert escalated == []

    render_summary(Console(file=shown, width=400), spring_cataract_campaign(), result)
    text = shown.getvalue()
    assert f"{len(play.late)} of the carried were cared for after their guarantee date" in text
    assert f"nvf stats --today {end}" in text
