"""Every state has a clock: the deadlines of one case, and which of them are due at `now`.

| state                                          | deadline                         | command        |
|------------------------------------------------|----------------------------------|----------------|
| match_proposed                                 | provider answer (hold expires)   | ExpireHold     |
| provider_accepted, offered_to_patient          | patient answer (hold expires)    | ExpireHold     |
| referred                                       | referral escalation, repeating   | EscalateReferral |
| need_identified, on_book (with a window end)   | case expiry                      | ExpireCase     |
| any state before care is performed             | guarantee warnings and breach    | WarnGuarantee  |

A sweeper asks `due_deadlines(state, now)` and decides each command; the ids are stable, so
running it twice at the same moment yields the same commands and the same events. A scheduler
that keeps one wake-up time per case stores `next_deadline(state).due_at`.

This is the one place of the schedule: the kinds, one due deadline and its stable id, every clock
of a case (the guarantee's dates and levels are in `guarantee.py`, the sweep's I/O in
`services/deadlines.py`). A sweeper that computes the due deadlines of a case twice (a retry, two
replicas for a moment) gets the same ids both times, because an id depends only on the case, the
kind and the due time. The commands it builds carry that id as their `command_id`, so the events
decided from them have stable ids too and a duplicate is recognised downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from uuid import UUID

from events.envelope import stable_event_id
from marketplace.lifecycle.case import CaseState
from marketplace.lifecycle.commands import Command, EscalateReferral, ExpireCase, ExpireHold, WarnGuarantee
from marketplace.lifecycle.guarantee import BREACH, GuaranteePolicy, warning_due_on
from marketplace.lifecycle.policy import DEFAULT_POLICY, LifecyclePolicy
from marketplace.lifecycle.reasons import HoldPhase
from marketplace.lifecycle.states import GUARANTEE_RUNNING
from marketplace.lifecycle.swedish_time import require_aware, start_of_swedish_day, swedish_date


class DeadlineKind(StrEnum):
    PROVIDER_ANSWER = "provider_answer"
    PATIENT_ANSWER = "patient_answer"
    REFERRAL_ESCALATION = "referral_escalation"
    CASE_EXPIRY = "case_expiry"
    GUARANTEE_WARNING = "guarantee_warning"
    GUARANTEE_BREACH = "guarantee_breach"


def deadline_id(case_ref: str, kind: DeadlineKind, due_at: datetime) -> UUID:
    """uuid5 of case, kind and due time (as UTC, so the zone it was computed in does not matter)."""
    utc = require_aware(due_at, "due_at").astimezone(UTC).isoformat()
    return stable_event_id("case-deadline", case_ref, kind.value, utc)


@dataclass(frozen=True)
class DueDeadline:
    """A deadline of one case, and the command that acts on it (carrying `deadline_id`)."""

    case_ref: str
    kind: DeadlineKind
    due_at: datetime
    deadline_id: UUID
    command: Command


# --- the guarantee's warnings -----------------------------------------------------------------


def _pending_levels(case: CaseState, policy: GuaranteePolicy) -> list[int]:
    if case.status not in GUARANTEE_RUNNING:
        return []
    warned = case.guarantee_warned_days_left
    return [lvl for lvl in policy.levels() if warned is None or lvl < warned]


def _deadline(case: CaseState, level: int) -> DueDeadline:
    due_on = warning_due_on(case.guarantee_date, level)
    due_at = start_of_swedish_day(due_on)
    kind = DeadlineKind.GUARANTEE_BREACH if level == BREACH else DeadlineKind.GUARANTEE_WARNING
    did = deadline_id(case.case_ref, kind, due_at)
    return DueDeadline(case.case_ref, kind, due_at, did,
                       WarnGuarantee(case.case_ref, level, due_on, command_id=did))


def guarantee_warnings_due(case: CaseState, today: date,
                           policy: GuaranteePolicy | None = None) -> list[DueDeadline]:
    """The warning to raise for `case` on `today` (a Swedish calendar date): at most one, the
    most severe level that is due and not yet raised."""
    policy = policy or GuaranteePolicy()
    due = [lvl for lvl in _pending_levels(case, policy)
           if warning_due_on(case.guarantee_date, lvl) <= today]
    return [_deadline(case, min(due))] if due else []


def next_guarantee_warning(case: CaseState, policy: GuaranteePolicy | None = None) -> DueDeadline | None:
    """The next warning that will fall due, whether or not it is due yet (for a scheduler that
    keeps each case's next wake-up time)."""
    pending = _pending_levels(case, policy or GuaranteePolicy())
    return _deadline(case, max(pending)) if pending else None


# --- every clock of a case ---------------------------------------------------------------------


def hold_deadline(state: CaseState) -> DueDeadline | None:
    phase = state.hold_phase
    if phase is None or state.hold_expires_at is None or state.match is None:
        return None
    kind = DeadlineKind.PROVIDER_ANSWER if phase is HoldPhase.PROVIDER_ANSWER else DeadlineKind.PATIENT_ANSWER
    due = state.hold_expires_at
    did = deadline_id(state.case_ref, kind, due)
    return DueDeadline(state.case_ref, kind, due, did,
                       ExpireHold(state.case_ref, state.match.match_id, due, command_id=did))


def referral_escalation_deadline(state: CaseState, policy: LifecyclePolicy = DEFAULT_POLICY
                                 ) -> DueDeadline | None:
    due = state.next_referral_escalation_due(policy.referral_escalation_after)
    if due is None or state.referral_id is None:
        return None
    kind = DeadlineKind.REFERRAL_ESCALATION
    did = deadline_id(state.case_ref, kind, due)
    return DueDeadline(state.case_ref, kind, due, did,
                       EscalateReferral(state.case_ref, state.referral_id, due, command_id=did))


def case_expiry_deadline(state: CaseState) -> DueDeadline | None:
    due = state.case_expiry_due
    if due is None:
        return None
    kind = DeadlineKind.CASE_EXPIRY
    did = deadline_id(state.case_ref, kind, due)
    return DueDeadline(state.case_ref, kind, due, did, ExpireCase(state.case_ref, due, command_id=did))


def upcoming_deadlines(state: CaseState, policy: LifecyclePolicy = DEFAULT_POLICY) -> list[DueDeadline]:
    """Every deadline the case is running towards now, due or not, earliest first."""
    found = [hold_deadline(state), referral_escalation_deadline(state, policy),
             case_expiry_deadline(state), next_guarantee_warning(state, policy.guarantee)]
    return sorted((d for d in found if d is not None), key=lambda d: d.due_at)


def next_deadline(state: CaseState, policy: LifecyclePolicy = DEFAULT_POLICY) -> DueDeadline | None:
    upcoming = upcoming_deadlines(state, policy)
    return upcoming[0] if upcoming else None


def due_deadlines(state: CaseState, now: datetime, policy: LifecyclePolicy = DEFAULT_POLICY
                  ) -> list[DueDeadline]:
    """The deadlines of `state` that are due at `now` (due_at <= now), earliest first.

    The guarantee warning is chosen for the Swedish calendar day of `now` (the most severe level
    due), the others by their exact due time. Decide them in order: an expired hold puts the
    case back on the book, which makes a later command of the same sweep stale, never wrong.
    """
    require_aware(now)
    timed = [d for d in (hold_deadline(state), referral_escalation_deadline(state, policy),
                         case_expiry_deadline(state)) if d is not None and d.due_at <= now]
    warnings = guarantee_warnings_due(state, swedish_date(now), policy.guarantee)
    return sorted([*timed, *warnings], key=lambda d: d.due_at)
