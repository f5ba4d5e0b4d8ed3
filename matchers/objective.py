"""Objective 2 of a clearing round: how much placing one patient is worth, given that the most
patients are placed (objective 1) and before cost (objective 3).

The contract's objective is the patient's wait days. Pre-breach matching adds a term for
patients published *before* their care guarantee is broken, with the breach date their home
region predicts (`Patient.breach_date`): a patient whose breach is `d` days away, `0 <= d <=
horizon`, is worth `wait_days + breach_weight * (horizon - d + 1)`. So among the allocations that
place the most patients, the round prefers those it can still save from a breach, the sooner the
breach the more, on top of the longest waiters. A patient already past the breach date, or with
no predicted date, is worth exactly their wait days.

With `breach_weight == 0` (the default, `CONTRACT`), or with no patient carrying a breach date,
every priority is the wait days and the round is exactly the contract's lexicographic optimum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from matchers.model import Patient

MAX_BREACH_WEIGHT = 1000
MAX_HORIZON_DAYS = 365


@dataclass(frozen=True, slots=True)
class Objective:
    breach_weight: int = 0
    breach_horizon_days: int = 30

    def __post_init__(self) -> None:
        if not 0 <= self.breach_weight <= MAX_BREACH_WEIGHT:
            raise ValueError(f"breach_weight must be 0..{MAX_BREACH_WEIGHT}, not {self.breach_weight}")
        if not 0 <= self.breach_horizon_days <= MAX_HORIZON_DAYS:
            raise ValueError(f"breach_horizon_days must be 0..{MAX_HORIZON_DAYS}, not {self.breach_horizon_days}")

    @property
    def is_contract(self) -> bool:
        return self.breach_weight == 0

    def priority(self, patient: Patient, as_of: date) -> int:
        wait = patient.wait_days(as_of)
        if self.breach_weight == 0 or patient.breach_date is None:
            return wait
        days_to_breach = (patient.breach_date - as_of).days
        if not 0 <= days_to_breach <= self.breach_horizon_days:
            return wait
        return wait + self.breach_weight * (self.breach_horizon_days - days_to_breach + 1)


CONTRACT = Objective()
"""The contract's objective: wait days only."""
