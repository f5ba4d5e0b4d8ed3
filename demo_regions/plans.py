"""When each party acts on each case of the play: a plan per case, deterministic per case."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime

from demo_regions.clock import working_morning
from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date

# The steps of the parties' play, in order, as `play_parties` reports them to `on_step`.
PLAY_STEPS = ("decline_match", "hold_expired", "accept_match", "offer_to_patient", "record_patient_answer",
              "referral", "schedule", "record_performed", "record_follow_up", "invoice", "payment", "receipts")

# What each case of the sample does (see `fates`).
CARRIED, PROVIDER_DECLINES, HOLD_EXPIRES, PATIENT_DECLINES = "carried", "provider_declines", "hold_expires", \
    "patient_declines"


@dataclass(frozen=True)
class Action:
    """One party's action on one case at a simulated moment."""

    at: datetime
    case_ref: str
    step: str


@dataclass(frozen=True)
class CasePlan:
    """A case's part in the play: its fate and the moments of its actions (deterministic per case)."""

    case_ref: str
    fate: str
    actions: tuple[Action, ...]
    scheduled_for: date | None = None


def _rng(case_ref: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"nvf-demo-play/{case_ref}".encode()).digest()[:8], "big"))


def _weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _office_hours(moment: datetime, rng: random.Random) -> datetime:
    """`moment`, or if it falls outside office hours (8-17 Swedish time, Monday to Friday) a moment
    in the first hours of the next working morning: people act at work."""
    local = moment.astimezone(SWEDISH_TIME)
    if local.weekday() < 5 and 8 <= local.hour < 17:
        return moment
    day = local.date() if local.hour < 8 else local.date() + timedelta(days=1)
    return working_morning(day) + timedelta(minutes=rng.randint(0, 150))


def plan_case(case_ref: str, fate: str, matched_at: datetime, hold_expires_at: datetime | None,
              patient_window: timedelta = timedelta(days=5)) -> CasePlan:
    """When each party of `case_ref` acts, from its match on, in office hours: the provider answers
    within hours to two days (or, `HOLD_EXPIRES`, never: the hold lapses a minute after its
    deadline), the home region offers the slot the same day, the patient answers in 1 to 4.5 days
    (inside the patient's hold), the referral goes the next working day, the provider books care 2
    to 6 weeks out and performs it on that day, follows up about two weeks later, invoices within a
    week of the follow-up, and the home region pays 5 to 30 days after the invoice."""
    rng = _rng(case_ref)
    lapse = hold_expires_at or matched_at + timedelta(hours=48)
    actions: list[Action] = []

    def act(at: datetime, step: str, *, latest: datetime | None = None) -> datetime:
        at = _office_hours(at, rng)
        if latest is not None:
            at = min(at, latest)  # inside the hold, whatever office hours say
        if actions:
            at = max(at, actions[-1].at + timedelta(minutes=1))  # a case's actions in their order
        actions.append(Action(at, case_ref, step))
        return at

    if fate == HOLD_EXPIRES:
        return CasePlan(case_ref, fate, (Action(lapse + timedelta(minutes=1), case_ref, "hold_expired"),))
    answered = act(matched_at + timedelta(hours=rng.uniform(2, 44)),
                   "decline_match" if fate == PROVIDER_DECLINES else "accept_match",
                   latest=lapse - timedelta(minutes=30))
    if fate == PROVIDER_DECLINES:
        return CasePlan(case_ref, fate, tuple(actions))
    patient_lapse = answered + patient_window
    offered = act(answered + timedelta(hours=rng.uniform(0.5, 5)), "offer_to_patient",
                  latest=patient_lapse - timedelta(hours=2))
    answer = act(offered + timedelta(days=rng.uniform(1, 4.5)), "record_patient_answer",
                 latest=patient_lapse - timedelta(minutes=30))
    if fate == PATIENT_DECLINES:
        return CasePlan(case_ref, fate, tuple(actions))
    referred = act(working_morning(swedish_date(answer) + timedelta(days=1))
                   + timedelta(minutes=rng.randint(0, 480)), "referral")
    act(referred + timedelta(hours=rng.uniform(2, 30)), "schedule")
    scheduled_for = _weekday(swedish_date(referred) + timedelta(days=rng.randint(14, 42)))
    act(working_morning(scheduled_for, dtime(14, 0)) + timedelta(minutes=rng.randint(0, 150)), "record_performed")
    followed_up = act(working_morning(scheduled_for + timedelta(days=rng.randint(12, 16)))
                      + timedelta(minutes=rng.randint(0, 480)), "record_follow_up")
    invoiced = act(followed_up + timedelta(days=rng.uniform(1, 7)), "invoice")
    act(invoiced + timedelta(days=rng.uniform(5, 30)), "payment")
    return CasePlan(case_ref, fate, tuple(actions), scheduled_for)


def fates(refs: list[str], *, decline_every: int = 8, expire_every: int = 10,
          patient_declines_every: int = 10) -> dict[str, str]:
    """Every `decline_every`-th case gets a provider decline; of the others, every `expire_every`-th
    (from the fifth) a provider that never answers, and every `patient_declines_every`-th (from the
    ninth) a patient who says no; the rest are carried to payment."""
    out = {}
    for i, ref in enumerate(refs):
        if decline_every and i % decline_every == decline_every - 1:
            out[ref] = PROVIDER_DECLINES
        elif expire_every and i % expire_every == min(4, expire_every - 1):
            out[ref] = HOLD_EXPIRES
        elif patient_declines_every and i % patient_declines_every == min(8, patient_declines_every - 1):
            out[ref] = PATIENT_DECLINES
        else:
            out[ref] = CARRIED
    return out


def sweeper_morning(day: date) -> datetime:
    """06:00 Swedish time on `day`, weekend or not: when the demo's sweeper looks."""
    return datetime.combine(day, dtime(6, 0), tzinfo=SWEDISH_TIME)
