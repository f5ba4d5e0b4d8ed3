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
# The worker role that runs each group: what the group stages goes out through that role's relay, in
# its name (the free-capacity feed runs beside the timelines).
GROUP_ROLE: dict[str, str] = {GROUP_INTAKE: "intake", GROUP_MATCHER: "matcher", GROUP_NOTIFIER: "notifier",
                              GROUP_TIMELINE: "timeline", GROUP_CAPACITY: "timeline"}


@dataclass(frozen=True)
class Streams:
    prefix: str = "nvf"

    def ingress(self, party: str) -> str:
        """What one party publishes to intake (offers, requests, withdrawals, agreements, case
        commands, clearing requests): one stream per region, the operator and the scheduler. Only
        that party's Redis user may append to it, so the stream names who sent an entry."""
        return f"{self.prefix}:ingress:{party}"

    def party_of_ingress(self, stream: str) -> str | None:
        """The party whose ingress stream `stream` is, or None."""
        head = self.ingress("")
        return stream[len(head):] if stream.startswith(head) and len(stream) > len(head) else None

    def outgoing(self, party: str) -> str:
        """What the marketplace tells one party (its refused input); only that party may read it."""
        return f"{self.prefix}:to:{party}"

    def case_feed(self, region: str) -> str:
        """The events of one region's cases, without patient identity: of the cases it refers out,
        and of those it provides care for while its match stands. Only that region may read it."""
        return f"{self.prefix}:to:{region}:cases"

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

    def secure_submissions(self, region: str) -> str:
        """Sealed messages one region's own system hands to the marketplace for delivery."""
        return f"{self.prefix}:sdk:submitted:{region}"

    def secure_receipts(self, region: str) -> str:
        """Signed business receipts one region returns for messages it was delivered."""
        return f"{self.prefix}:sdk:receipts:{region}"

    def party_of_secure(self, stream: str) -> str | None:
        """The region whose submission or receipt stream `stream` is, or None."""
        for head in (self.secure_submissions(""), self.secure_receipts("")):
            if stream.startswith(head) and len(stream) > len(head):
                return stream[len(head):]
        return None

    def inbox(self, org_number: str) -> str:
        """One organisation's inbox: sealed messages for it, receipts for what it sent."""
        return f"{self.prefix}:sdk:inbox:{org_number}"

    def all_streams(self, care_areas: Iterable[str], parties: Iterable[str] = ()) -> list[str]:
        return [*(self.ingress(p) for p in parties), *(self.book(a) for a in care_areas), self.matches,
                self.cases, self.messages, self.rejections, self.dead_letter]
