"""Clients that speak for parties: each party's Redis connection made as that party's own user.

The demo's region agents, `nvf publish`, `nvf case do` and the tests publish through these, so
what a party sends lands on its own ingress stream, under its own credentials, exactly as a
region's own system would send it. Without credentials (a Redis without the parties' users) all
parties share the one connection given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from events import Envelope, Streams
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.redis_users import Credential


class PartyClients:
    def __init__(self, redis_url: str, credentials: Mapping[str, Credential] | None) -> None:
        self.redis_url = redis_url
        self.credentials = credentials
        self._clients: dict[str, Any] = {}

    def client(self, party: str) -> Any:
        """The connection of `party` (made on first use)."""
        key = party if self.credentials is not None else ""
        if key not in self._clients:
            url = self.credentials[party].url(self.redis_url) if self.credentials is not None else self.redis_url
            self._clients[key] = aioredis.from_url(url)
        return self._clients[key]

    async def publish(self, streams: Streams, envelopes: Iterable[Envelope], *, chunk: int = 500) -> int:
        """Each envelope on its producer's ingress stream, sent by that producer; returns how many."""
        by_party: dict[str, list[Envelope]] = defaultdict(list)
        for envelope in envelopes:
            by_party[envelope.producer].append(envelope)
        sent = 0
        for party, items in by_party.items():
            client = self.client(party)
            for start in range(0, len(items), chunk):
                async with client.pipeline(transaction=False) as pipe:
                    for envelope in items[start:start + chunk]:
                        pipe.xadd(streams.ingress(party), {DATA_FIELD: envelope.to_json()})
                    await pipe.execute()
                sent += len(items[start:start + chunk])
        return sent

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def __aenter__(self) -> PartyClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
