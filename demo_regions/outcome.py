"""What the play did: the cases' fates and how far each step got, the messages and receipts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from demo_regions.plans import CasePlan


@dataclass
class PartyOutcome:
    carried: list[str] = field(default_factory=list)
    """Cases taken through referral, care, follow-up, invoice and payment."""
    declined: list[str] = field(default_factory=list)
    """Cases whose provider declined the match."""
    expired: list[str] = field(default_factory=list)
    """Cases whose provider never answered: the hold lapsed at its deadline."""
    patient_declined: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    """Carried cases whose care came after their guarantee date (the sweeper warned on each)."""
    plans: dict[str, CasePlan] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    """How many cases reached the state each step of the play aims at."""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    """The (simulated) moments the play began and ended."""
    referrals_opened: int = 0
    messages_received: int = 0
    receipts_returned: int = 0
    receipts_read: int = 0
    refusals: int = 0
    seconds: float = 0.0
