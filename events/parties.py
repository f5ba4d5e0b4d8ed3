"""Who may write which stream: the producer of an entry is the party whose channel it came on.

Every party connects to Redis as its own ACL user (marketplace/access.py), so the stream an entry
was appended to says who appended it: a region's ingress stream only that region can append to,
a book partition only the intake role, and so on. The `producer` an envelope names is a claim;
consumers hold it against `allowed_producers` of the stream the entry arrived on and refuse what
does not fit (rule `producer_is_channel`), so an entry written with another identity (or by a
client with more rights than it should have) is never applied, signed or put on a timeline.
"""

from __future__ import annotations

from events.streams import Streams

OPERATOR = "operator"
SCHEDULER = "scheduler"
INTAKE = "intake"
MATCHER = "matcher"
NOTIFIER = "notifier"
TIMELINE = "timeline"

# The worker roles (consumer groups) and the scheduler (the deadline sweeper), each its own user.
WORKER_ROLES = (INTAKE, MATCHER, NOTIFIER, TIMELINE)
SERVICE_ROLES = (*WORKER_ROLES, SCHEDULER)
# Parties besides the regions that publish on an ingress stream of their own.
COMMANDING_PARTIES = (OPERATOR, SCHEDULER)
# Who may ask for a clearing round on the bus (a matcher also clears on its own, off the bus).
CLEARING_REQUESTERS = frozenset({OPERATOR, SCHEDULER})

RULE_PRODUCER_IS_CHANNEL = "producer_is_channel"


def channel_party(streams: Streams, stream: str) -> str | None:
    """The outside party whose own stream `stream` is (an ingress or SDK stream), or None."""
    return streams.party_of_ingress(stream) or streams.party_of_secure(stream)


def allowed_producers(streams: Streams, stream: str) -> frozenset[str]:
    """The producers an entry on `stream` may have; empty for a stream no consumer takes input from."""
    party = channel_party(streams, stream)
    if party is not None:
        return frozenset({party})
    if stream.startswith(streams.book("")):
        return frozenset({INTAKE})
    if stream == streams.matches:
        return frozenset({MATCHER})
    if stream == streams.cases:
        # The lifecycle's mirrors, from whichever role decided the step.
        return frozenset({INTAKE, MATCHER, NOTIFIER})
    if stream == streams.messages:
        return frozenset({NOTIFIER})
    return frozenset()
