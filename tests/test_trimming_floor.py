"""The trim floor when a group's pending list empties between reading the groups and reading it."""

from __future__ import annotations

from typing import Any

from workers.trimming import safe_floor


class _AckedMeanwhile:
    """Redis as seen across the race: XINFO still counts one pending entry, XPENDING finds none."""

    async def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return [{"name": b"g", "pending": 1, "last-delivered-id": b"5-0"}]

    async def xpending(self, stream: str, group: str) -> dict[str, Any]:
        return {"pending": 0, "min": None, "max": None, "consumers": []}


async def test_a_pending_list_emptied_meanwhile_gives_the_last_delivered_id() -> None:
    assert await safe_floor(_AckedMeanwhile(), "s", ["g"]) == "5-0"
