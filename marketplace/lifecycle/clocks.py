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
"""

from __future__ import annotations

from datetime import datetime

from marketplace.lifecycle.case import CaseState
from marketplace.lifecycle.commands import EscalateReferral, ExpireCase, ExpireHold
from marketplace.lifecycle.deadlines import DeadlineKind, DueDeadline, deadline_id
from marketplace.lifecycle.guarantee import guarantee_warnings_due, next_guarantee_warning
from marketplace.lifecycle.policy import DEFAULT_POLICY, LifecyclePolicy
from marketplace.lifecycle.reasons import HoldPhase
from marketplace.lifecycle.swedish_time import require_aware, swedish_date


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
