"""Defence in depth: an entry whose producer may not write the stream it arrived on is refused.

The ACL keeps a party from appending to a stream that is not its own; this holds even when that
fails (a Redis with the default user left open, an admin client, a role's credentials misused):
every consumer screens its batch first. A refused entry is recorded (a `rejections` row, a log
line, an `event.rejected` on the operators' stream and, when the stream is an outside party's
own, on that party's outgoing stream) and passed on to no handler, so it is never applied,
signed or put on a timeline. Its event id is recorded under `<group>:refused`, so a redelivery
is refused once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from events.parties import RULE_PRODUCER_IS_CHANNEL, allowed_producers, channel_party
from events.streams import GROUP_ROLE
from marketplace.adapters.inbox import already_processed, record_processed
from marketplace.services.context import ServiceContext
from marketplace.services.refusals import reject

log = structlog.get_logger(__name__)


def _claims(raw: Any) -> tuple[str, str, str | None] | None:
    """(event_id, producer, type) an entry claims, or None when it is not an envelope at all (the
    handler refuses or dead-letters that by its own rules)."""
    try:
        data = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    event_id, producer, kind = data.get("event_id"), data.get("producer"), data.get("type")
    if not isinstance(event_id, str) or not isinstance(producer, str):
        return None
    try:
        event_id = str(uuid.UUID(event_id))
    except ValueError:
        return None
    return event_id, producer, kind if isinstance(kind, str) else None


async def screen(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext, *, stream: str,
                 group: str, before_write: Callable[[AsyncSession], Awaitable[None]] | None = None) -> list[Any]:
    """The entries of `items` whose producer may write `stream`; the others refused and recorded
    (after `before_write`, a partition's fence, when something is to be recorded)."""
    allowed = allowed_producers(ctx.streams, stream)
    admitted: list[Any] = []
    refused: list[tuple[str, str, str | None]] = []
    for raw in items:
        claim = _claims(raw)
        if claim is None or claim[1] in allowed:
            admitted.append(raw)
        else:
            refused.append(claim)
    if not refused:
        return admitted
    if before_write is not None:
        await before_write(session)
    marker = f"{group}:refused"
    seen = await already_processed(session, marker, (eid for eid, _, _ in refused))
    party = channel_party(ctx.streams, stream)
    for event_id, _producer, kind in refused:
        if event_id in seen:
            continue
        seen.add(event_id)
        record_processed(session, marker, event_id)
        # The claimed producer is not echoed: it is the sender's text, and may be anything.
        who = ", ".join(sorted(allowed)) or "no one"
        message = (f"an entry on this stream is published by {who} only; the envelope names another producer"
                   if party is not None else f"only {who} may write this stream")
        reject(session, ctx.streams, field="producer", rule=RULE_PRODUCER_IS_CHANNEL, message=message,
               event_id=event_id, event_type=kind if kind and len(kind) <= 64 else None,
               producer=party, worker=group, recipient=party, stream=stream,
               role=GROUP_ROLE.get(group, group))
    return admitted
