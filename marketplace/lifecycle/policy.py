"""Everything configurable about the lifecycle, in one value the caller passes in.

Defaults follow the brief: 48 h for the provider, 5 days for the patient, referral escalation
after 3 days, the 90-day guarantee with warnings 14 and 7 days ahead, no co-payment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from marketplace.lifecycle.guarantee import GuaranteePolicy
from marketplace.lifecycle.holds import HoldPolicy
from marketplace.lifecycle.settlement import CoPayments


@dataclass(frozen=True)
class LifecyclePolicy:
    holds: HoldPolicy = field(default_factory=HoldPolicy)
    referral_escalation_after: timedelta = timedelta(days=3)
    guarantee: GuaranteePolicy = field(default_factory=GuaranteePolicy)
    co_payments: CoPayments = field(default_factory=CoPayments)

    def __post_init__(self) -> None:
        if self.referral_escalation_after <= timedelta(0):
            raise ValueError("referral_escalation_after must be positive")


DEFAULT_POLICY = LifecyclePolicy()
