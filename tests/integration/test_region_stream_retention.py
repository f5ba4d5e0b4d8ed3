"""The streams the regions read themselves (their answers, case feeds and inboxes) have no consumer
group to say what was read: they are trimmed by age, by the notifier's own Redis user, and nothing
newer than the retention goes. Real Redis (7 with REDIS_URL, else the embedded 6.2), every party's
ACL user applied."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import NoPermissionError

from events import Streams
from marketplace.access import supports_selectors
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.redis_users import server_version
from marketplace.settings import Settings
from matchers.reference import regions
from tests.integration.harness import apply_access, marketplace
from workers.trimming import region_read_streams, trim_older_than

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def _aged(redis: Any, streams: list[str], *ages_days: int) -> None:
    """An entry of each age (days before now) on each stream, oldest first, then one of now."""
    now_ms = int(time.time() * 1000)
    for stream in streams:
        for age in ages_days:
            await redis.xadd(stream, {DATA_FIELD: "{}"}, id=f"{now_ms - age * DAY_MS}-0")
        await redis.xadd(stream, {DATA_FIELD: "{}"})


def _region_25(st: Streams) -> list[str]:
    return [st.outgoing("25"), st.case_feed("25"), st.inbox(regions()["25"].org_number)]


async def test_the_notifier_trims_what_is_older_than_the_retention_and_a_region_cannot(
        settings: Settings, redis_client: Any) -> None:
    st = Streams(settings.stream_prefix)
    mine = _region_25(st)
    assert set(mine) <= set(region_read_streams(st)) and len(region_read_streams(st)) == 3 * len(regions())
    await _aged(redis_client, mine, 45, 31, 29)
    async with PartyClients(settings.redis_url or "", await apply_access(settings)) as parties:
        removed = await trim_older_than(parties.client("notifier"), region_read_streams(st), 30 * 86_400)
        assert {s: removed[s] for s in mine} == dict.fromkeys(mine, 2)
        assert [await redis_client.xlen(s) for s in mine] == [2, 2, 2]  # 29 days old, and now
        # A region reads its feed; it does not get to shorten it.
        with pytest.raises(NoPermissionError):
            await parties.client("25").xtrim(st.case_feed("25"), minid="0-1")
        if supports_selectors(await server_version(redis_client)):
            # Intake appends to the regions' answers but trims only the streams it consumes (on 6.2 a
            # user's commands reach all its keys: the README's 6.2 limits).
            with pytest.raises(NoPermissionError):
                await parties.client("intake").xtrim(st.outgoing("25"), minid="0-1")
    assert [await redis_client.xlen(s) for s in mine] == [2, 2, 2]


async def test_a_running_notifier_trims_the_regions_streams_by_age(settings: Settings, database: Any,
                                                                    redis_client: Any) -> None:
    st = Streams(settings.stream_prefix)
    mine = _region_25(st)
    await _aged(redis_client, mine, 40)
    quick = settings.model_copy(update={"trim_interval_s": 0.05, "region_stream_retention_days": 30.0})
    async with marketplace(quick, database, ("notifier",), access=True):
        async with asyncio.timeout(60):
            while [await redis_client.xlen(s) for s in mine] != [1, 1, 1]:
                await asyncio.sleep(0.05)
    newest = [await redis_client.xrevrange(s, count=1) for s in mine]
    assert all(int(entries[0][0].split(b"-")[0]) > time.time() * 1000 - DAY_MS for entries in newest)

