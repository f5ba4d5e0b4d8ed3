"""The care-guarantee clock (vårdgaranti 0-3-90-90): care within 90 calendar days of the
treatment decision.

Dates, as the law counts them:

- `guarantee_date` = treatment decision (`waiting_since`) + 90 days: the last day on which care
  is still within the guarantee.
- A warning "d days left" falls due on `guarantee_date - d` (defaults: 14 and 7).
- The breach warning falls due on `guarantee_date + 1`, the first day past the guarantee; it is
  written as days_left = -1.

Only the most severe warning due is raised: a case that arrives already past its guarantee gets
one breach warning, not three warnings at once; a level once raised is never raised again, and
raising a level silences the milder ones. No warning once care is performed or the case ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from marketplace.lifecycle.commands import WarnGuarantee
from marketplace.lifecycle.deadlines import DeadlineKind, DueDeadline, deadline_id
from marketplace.lifecycle.states import GUARANTEE_RUNNING, CaseStatus
from marketplace.lifecycle.swedish_time import start_of_swedish_day


class GuaranteedCase(Protocol):
    """What the guarantee rules read of a case (a `CaseState`), so the rules need not know the aggregate."""

    @property
    def case_ref(self) -> str: ...
    @property
    def status(self) -> CaseStatus: ...
    @property
    def guarantee_date(self) -> date: ...
    @property
    def guarantee_warned_days_left(self) -> int | None: ...

GUARANTEE_DAYS = 90
BREACH = -1
"""`days_left` of the breach warning."""


@dataclass(frozen=True)
class GuaranteePolicy:
    days: int = GUARANTEE_DAYS
    warn_days_before: tuple[int, ...] = (14, 7)

    def __post_init__(self) -> None:
        if self.days <= 0:
            raise ValueError("the guarantee must be a positive number of days")
        if any(d < 0 for d in self.warn_days_before):
            raise ValueError("warning days must be 0 or more days before the guarantee date")

    def guarantee_date(self, waiting_since: date) -> date:
        return waiting_since + timedelta(days=self.days)

    def levels(self) -> tuple[int, ...]:
        """Every warning level as days left, mildest first, the breach last."""
        return (*sorted(set(self.warn_days_before), reverse=True), BREACH)


def warning_due_on(guarantee_date: date, days_left: int) -> date:
    return guarantee_date - timedelta(days=days_left)


def days_left(guarantee_date: date, today: date) -> int:
    """Days from `today` to the guarantee date; negative once it has passed."""
    return (guarantee_date - today).days


def is_breached(guarantee_date: date, today: date) -> bool:
    return today > guarantee_date


def _pending_levels(case: GuaranteedCase, policy: GuaranteePolicy) -> list[int]:
    if case.status not in GUARANTEE_RUNNING:
        return []
    warned = case.guarantee_warned_days_left
    return [lvl for lvl in policy.levels() if warned is None or lvl < warned]


def _deadline(case: GuaranteedCase, level: int) -> DueDeadline:
    due_on = warning_due_on(case.guarantee_date, level)
    due_at = start_of_swedish_day(due_on)
    kind = DeadlineKind.GUARANTEE_BREACH if level == BREACH else DeadlineKind.GUARANTEE_WARNING
    did = deadline_id(case.case_ref, kind, due_at)
    return DueDeadline(case.case_ref, kind, due_at, did,
                       WarnGuarantee(case.case_ref, level, due_on, command_id=did))


def guarantee_warnings_due(case: GuaranteedCase, today: date,
                           policy: GuaranteePolicy | None = None) -> list[DueDeadline]:
    """The warning to raise for `case` on `today` (a Swedish calendar date): at most one, the
    most severe level that is due and not yet raised."""
    policy = policy or GuaranteePolicy()
    due = [lvl for lvl in _pending_levels(case, policy)
           if warning_due_on(case.guarantee_date, lvl) <= today]
    return [_deadline(case, min(due))] if due else []


def next_guarantee_warning(case: GuaranteedCase, policy: GuaranteePolicy | None = None) -> DueDeadline | None:
    """The next warning that will fall due, whether or not it is due yet (for a scheduler that
    keeps each case's next wake-up time)."""
    pending = _pending_levels(case, policy or GuaranteePolicy())
    return _deadline(case, max(pending)) if pending else None
