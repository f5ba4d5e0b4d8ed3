"""What the lifecycle's decisions look like on the bus's `cases` stream.

The bus carries `case.state_changed` (events.payloads.CaseStateChanged): one per change of state,
with a short coded reason. The domain events themselves stay in the timeline; this is the view
operators and other workers subscribe to.
"""

from __future__ import annotations

from collections.abc import Iterable

from events.payloads import CaseStateChanged
from marketplace.lifecycle.case import CaseState, evolve
from marketplace.lifecycle.events import (
    CaseCancelled,
    CaseEvent,
    CaseExpired,
    CaseWithdrawn,
    HoldExpired,
    PatientDeclinedOffer,
    ProviderDeclinedMatch,
)


def change_reason(event: CaseEvent) -> str:
    """A short code for why the state changed ("" when the change is the ordinary next step)."""
    match event:
        case ProviderDeclinedMatch(reason_code=code):
            return f"provider_declined:{code.value}"
        case PatientDeclinedOffer(reason_code=code):
            return f"patient_declined:{code.value}"
        case HoldExpired(phase=phase):
            return f"hold_expired:{phase.value}"
        case CaseWithdrawn(reason=reason):
            return f"withdrawn:{reason.value}"
        case CaseCancelled(reason=reason):
            return f"cancelled:{reason}"
        case CaseExpired():
            return "expired:request_window_ended"
    return ""


def state_changes(before: CaseState | None, events: Iterable[CaseEvent]) -> list[CaseStateChanged]:
    """One CaseStateChanged per event of `events` that changes the state of the case, with the
    case version after that event."""
    changes: list[CaseStateChanged] = []
    state = before
    for event in events:
        previous = state.status if state is not None else None
        state = evolve(state, event)
        if state.status is not previous:
            changes.append(CaseStateChanged(
                case_ref=state.case_ref, from_state=previous.value if previous else None,
                to_state=state.status.value, reason=change_reason(event), version=state.version,
            ))
    return changes
