"""What the workers of one process share: settings, stream names, the database, the broker, the relay.

A leaf: it knows nothing of the consumers and partitions that run on it (workers/app.py's `running`
hands those back as `Workers`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from faststream.redis import RedisBroker

from events import Streams
from marketplace.adapters.checkpoint_key import load_or_create_key
from marketplace.adapters.database import Database
from marketplace.adapters.outbox import OutboxRelay
from marketplace.adapters.redis_users import Credential
from marketplace.services.context import ServiceContext
from marketplace.settings import Settings

MAX_CONNECTIONS = 512


@dataclass
class Runtime:
    settings: Settings
    streams: Streams
    db: Database
    broker: RedisBroker
    relay: OutboxRelay
    context: ServiceContext
    # With the parties' credentials, each role runs in a runtime of its own, connected as its own
    # Redis user (`for_party`); this one then only holds them (and its own connection for callers).
    redis_url: str = ""
    credentials: Mapping[str, Credential] | None = None
    roles: dict[str, Runtime] = field(default_factory=dict)

    @property
    def redis(self) -> Any:
        """The broker's own redis-py client (valid once the broker is connected)."""
        return self.broker._connection  # FastStream exposes it only as the `Redis` context annotation

    @classmethod
    def create(cls, settings: Settings, redis_url: str, db: Database | None = None, *,
               credentials: Mapping[str, Credential] | None = None,
               producers: frozenset[str] | None = None) -> Runtime:
        # FastStream logs through structlog like everything else (JSON lines off a terminal); its
        # per-message "Received"/"Processed" lines are debug: thousands a second say nothing.
        # Every subscriber (a reader and a claimer per stream and group: one ingress stream per party,
        # one SDK stream per region and kind) holds a connection while it blocks; redis-py's pool
        # stops at 100 by default, fewer than the intake and notifier roles run together.
        broker = RedisBroker(redis_url, graceful_timeout=10.0, logger=structlog.get_logger("faststream"),
                             log_level=logging.DEBUG, max_connections=MAX_CONNECTIONS)
        db = db or Database.of(settings)
        streams = Streams(settings.stream_prefix)
        return cls(settings=settings, streams=streams, db=db, broker=broker,
                   relay=OutboxRelay(db, None, producers=producers), context=ServiceContext(streams=streams),
                   redis_url=redis_url, credentials=credentials)

    def for_party(self, party: str) -> Runtime:
        """A runtime connected as `party`'s Redis user, sharing this one's database and context; its
        relay publishes only what `party` staged. Kept in `roles`."""
        if self.credentials is None:
            raise ValueError("no credentials: this runtime connects as one user")
        if party not in self.roles:
            child = Runtime.create(self.settings, self.credentials[party].url(self.redis_url), db=self.db,
                                   producers=frozenset({party}))
            child.context = self.context
            self.roles[party] = child
        return self.roles[party]

    async def connect(self) -> None:
        if self.context.timeline_key is None:
            # Read (or made) when the workers start, not when the app is merely built.
            self.context.timeline_key = load_or_create_key(self.settings.state_dir)
        await self.broker.connect()
        self.relay.redis = self.redis
