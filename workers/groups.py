"""Consumer groups, created by us at the start of the stream.

FastStream creates a missing group at `$`, which skips entries published before the worker first
started; creating it at `0` first means a backlog published before the workers were up is read.
The consumer's supervisor (workers/consumer.py) calls this before it starts FastStream's
subscribers, and again when one of them stopped on NOGROUP (the group was deleted, or Redis came
back empty), so FastStream only ever finds the group existing.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError


async def ensure_group(redis: Any, stream: str, group: str) -> bool:
    """Create `group` on `stream` at its beginning; False when it already existed."""
    try:
        await redis.xgroup_create(name=stream, groupname=group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True
