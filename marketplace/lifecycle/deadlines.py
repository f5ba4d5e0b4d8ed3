"""The vocabulary of deadlines: their kinds, one due deadline, and its stable id.

A sweeper that computes the due deadlines of a case twice (a retry, two replicas for a moment)
gets the same ids both times, because an id depends only on the case, the kind and the due time.
The commands it builds carry that id as their `command_id`, so the events decided from them have
stable ids too and a duplicate is recognised downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

from events.envelope import stable_event_id
from marketplace.lifecycle.commands import Command
from marketplace.lifecycle.swedish_time import require_aware


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
