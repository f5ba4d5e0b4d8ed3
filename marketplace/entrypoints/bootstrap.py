"""Start what the configured settings need: the embedded Redis when REDIS_URL is unset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from marketplace.adapters.embedded_redis import EmbeddedRedis
from marketplace.settings import Settings


@contextmanager
def redis_server(settings: Settings) -> Iterator[str]:
    """The Redis URL to use; starts (and afterwards stops) an embedded server if none is configured."""
    if settings.redis_url:
        yield settings.redis_url
        return
    with EmbeddedRedis(settings.state_dir / "redis") as url:
        yield url
