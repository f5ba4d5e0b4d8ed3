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
