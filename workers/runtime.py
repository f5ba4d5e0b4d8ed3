"""What the workers of one process share: settings, stream names, the database, the broker, the relay."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from faststream.redis import RedisBroker

from events import Streams
from marketplace.adapters.checkpoint_key import load_or_create_key
from marketplace.adapters.database import Database
from marketplace.adapters.outbox import OutboxRelay
from marketplace.services.context import ServiceContext
from marketplace.settings import Settings

if TYPE_CHECKING:
    from workers.consumer import StreamConsumer
    from workers.partitions import PartitionManager


@dataclass
class Runtime:
    settings: Settings
    streams: Streams
    db: Database
    broker: RedisBroker
    relay: OutboxRelay
    context: ServiceContext
    # The consumers of the roles this process runs, and the matcher's partitions (set by `running`).
    consumers: list[StreamConsumer] = field(default_factory=list)
    partitions: PartitionManager | None = None

    @property
    def redis(self) -> Any:
        """The broker's own redis-py client (valid once the broker is connected)."""
        return self.broker._connection  # FastStream exposes it only as the `Redis` context annotation

    @classmethod
    def create(cls, settings: Settings, redis_url: str, db: Database | None = None) -> Runtime:
        # FastStream logs through structlog like everything else (JSON lines off a terminal); its
        # per-message "Received"/"Processed" lines are debug: thousands a second say nothing.
        broker = RedisBroker(redis_url, graceful_timeout=10.0, logger=structlog.get_logger("faststream"),
                             log_level=logging.DEBUG)
        db = db or Database(settings.effective_database_url, schema=settings.db_schema)
        streams = Streams(settings.stream_prefix)
        return cls(settings=settings, streams=streams, db=db, broker=broker, relay=OutboxRelay(db, None),
                   context=ServiceContext(streams=streams))

    async def connect(self) -> None:
        if self.context.timeline_key is None:
            # Read (or made) when the workers start, not when the app is merely built.
            self.context.timeline_key = load_or_create_key(self.settings.state_dir)
        await self.broker.connect()
        self.relay.redis = self.redis
