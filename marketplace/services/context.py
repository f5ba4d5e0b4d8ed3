"""What every handler may use besides its session: stream names, the clock, the lifecycle policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from events import Streams
from marketplace.lifecycle import DEFAULT_POLICY, LifecyclePolicy


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceContext:
    streams: Streams
    # Tests move time by hand instead of sleeping: every handler asks this clock, never datetime.now.
    clock: Callable[[], datetime] = system_clock
    policy: LifecyclePolicy = field(default_factory=lambda: DEFAULT_POLICY)
    # The marketplace's key for timeline checkpoints (marketplace/adapters/checkpoint_key.py); None
    # records each case's head without a checkpoint, which `--verify` then reports.
    timeline_key: bytes | None = None
    # The outside party whose own stream the batch came from (its ingress or SDK stream), known from
    # the channel: a refusal is told to it, whatever the entry claims.
    channel: str | None = None
