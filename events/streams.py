"""Stream and consumer-group names, defined here and nowhere else.

Every name carries a prefix so that deployments (and tests) can share one Redis without touching
each other's keys. The book is partitioned by care area: one stream, one writer, per partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Consumer groups, one per worker role.
GROUP_INTAKE = "intake"
GROUP_MATCHER = "matcher"
GROUP_NOTIFIER = "notifier"
GROUP_TIMELINE = "timeline"
# The free-capacity feed's projection of the offers (hosted by the timeline role).
GROUP_CAPACITY = "capacity"


@dataclass(frozen=True)
class Streams:
    prefix: str = "nvf"

    @property
    def intake(self) -> str:
        """What regions publish: offers, requests, withdrawals, agreements, clearing requests."""
        return f"{self.prefix}:intake"

    def book(self, care_area: str) -> str:
        """Accepted items of one care area's book, in order; the matcher's partition."""
        return f"{self.prefix}:book:{care_area}"

    @property
    def matches(self) -> str:
        """Match proposals, patients not placed, completed rounds."""
        return f"{self.prefix}:matches"

    @property
    def cases(self) -> str:
        """Case state changes."""
        return f"{self.prefix}:cases"

    @property
    def messages(self) -> str:
        """Messages sent to parties and their receipts."""
        return f"{self.prefix}:messages"

    @property
    def rejections(self) -> str:
        """Bad input, told back to its sender."""
        return f"{self.prefix}:rejections"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}:dead-letter"

    # --- secure messages (SDK style): the marketplace routes sealed messages it cannot read ---

    @property
    def secure_submissions(self) -> str:
        """Sealed messages a party's own system hands to the marketplace for delivery."""
        return f"{self.prefix}:sdk:submitted"

    @property
    def secure_receipts(self) -> str:
        """Signed business receipts a recipient returns for a message it was delivered."""
        return f"{self.prefix}:sdk:receipts"

    def inbox(self, org_number: str) -> str:
        """One organisation's inbox: sealed messages for it, receipts for what it sent."""
        return f"{self.prefix}:sdk:inbox:{org_number}"

    def all_streams(self, care_areas: Iterable[str]) -> list[str]:
        return [self.intake, *(self.book(a) for a in care_areas), self.matches, self.cases,
                self.messages, self.rejections, self.dead_letter]
