"""The worker roles wired onto Redis Streams consumer groups.

One process may host any subset of the roles (`nvf run --role ...`); the demo hosts all of them.
Every subscriber reads in batches and handles a batch in one database transaction, whose outbox
rows the relay publishes right after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import structlog
from faststream.redis import StreamSub
from sqlalchemy.exc import IntegrityError

from events import ClearingRoundRequested, EventParseError, MatchProposed
from events.envelope import parse_envelope
from events.streams import GROUP_INTAKE, GROUP_MATCHER, GROUP_NOTIFIER, GROUP_TIMELINE
from marketplace.adapters.inbox import already_processed, record_processed
from marketplace.services import clearing, intake, notification, timeline
from matchers.reference import care_areas as all_care_areas
from workers.groups import ensure_group
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

ROLES = ("intake", "matcher", "notifier", "timeline")
TIMELINE_ATTEMPTS = 5


def _sub(runtime: Runtime, stream: str, group: str) -> StreamSub[Any]:
    s = runtime.settings
    return StreamSub(stream, group=group, consumer=s.consumer_name, batch=True, max_records=s.batch_size,
                     polling_interval=s.polling_interval_ms)


def subscriptions(runtime: Runtime, roles: Iterable[str],
                  care_areas: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """(stream, group) of every subscriber the given roles need."""
    st = runtime.streams
    wanted = set(roles)
    pairs: list[tuple[str, str]] = []
    if "intake" in wanted:
        pairs.append((st.intake, GROUP_INTAKE))
    if "matcher" in wanted:
        pairs += [(st.book(area), GROUP_MATCHER) for area in (care_areas or sorted(all_care_areas()))]
    if "notifier" in wanted:
        pairs.append((st.matches, GROUP_NOTIFIER))
    if "timeline" in wanted:
        pairs += [(st.cases, GROUP_TIMELINE), (st.matches, GROUP_TIMELINE), (st.messages, GROUP_TIMELINE)]
    return pairs


def register_workers(runtime: Runtime, roles: Iterable[str] = ROLES,
                     care_areas: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Add the subscribers of `roles` to the runtime's broker; returns their (stream, group) pairs."""
    broker, db, streams = runtime.broker, runtime.db, runtime.streams
    pairs = subscriptions(runtime, roles, care_areas)
    # Timeline appends from three streams must not race each other for the next version.
    timeline_lock = asyncio.Lock()

    async def after_commit() -> None:
        await runtime.relay.flush()

    for stream, group in pairs:
        if group == GROUP_INTAKE:

            @broker.subscriber(stream=_sub(runtime, stream, group), title="intake")
            async def handle_intake(body: list[Any]) -> None:
                async with db.session() as session:
                    result = await intake.handle_batch(session, body, streams)
                    await session.commit()
                log.info("intake.batch", received=len(body), accepted=result.accepted,
                         rejected=result.rejected, duplicates=result.duplicates)
                await after_commit()

        elif group == GROUP_MATCHER:

            @broker.subscriber(stream=_sub(runtime, stream, group), title=f"matcher {stream}")
            async def handle_book(body: list[Any]) -> None:
                for raw in body:
                    envelope, payload = _trusted(raw)
                    if envelope is None or not isinstance(payload, ClearingRoundRequested):
                        continue
                    structlog.contextvars.bind_contextvars(event_id=str(envelope.event_id),
                                                           correlation_id=envelope.correlation_id,
                                                           round_id=payload.round_id)
                    async with db.session() as session:
                        await clearing.run_round(session, envelope, payload, streams)
                        await session.commit()
                    structlog.contextvars.clear_contextvars()
                    await after_commit()

        elif group == GROUP_NOTIFIER:

            @broker.subscriber(stream=_sub(runtime, stream, group), title="notifier")
            async def handle_matches(body: list[Any]) -> None:
                items = [pair for raw in body if (pair := _trusted(raw))[0] is not None]
                async with db.session() as session:
                    seen = await already_processed(session, notification.CONSUMER,
                                                   (str(e.event_id) for e, _ in items if e is not None))
                    for envelope, payload in items:
                        assert envelope is not None
                        eid = str(envelope.event_id)
                        if eid in seen:
                            continue
                        seen.add(eid)
                        if isinstance(payload, MatchProposed):
                            notification.notify_match(session, envelope, payload, streams)
                        record_processed(session, notification.CONSUMER, eid)
                    await session.commit()
                await after_commit()

        elif group == GROUP_TIMELINE:

            @broker.subscriber(stream=_sub(runtime, stream, group), title=f"timeline {stream}")
            async def handle_case_events(body: list[Any]) -> None:
                items = [pair for raw in body if (pair := _trusted(raw))[0] is not None]
                for attempt in range(1, TIMELINE_ATTEMPTS + 1):
                    try:
                        async with timeline_lock, db.session() as session:
                            await timeline.append_events(session, items)  # type: ignore[arg-type]
                            await session.commit()
                        return
                    except IntegrityError:
                        # Another timeline process took the next version of a case first: read again.
                        if attempt == TIMELINE_ATTEMPTS:
                            raise
                        log.info("timeline.version_conflict", attempt=attempt)
                        await asyncio.sleep(0.01 * attempt)
    return pairs


def _trusted(raw: Any) -> tuple[Any, Any]:
    """Parse an entry written by our own workers; a broken one is logged and skipped."""
    try:
        return parse_envelope(raw)
    except EventParseError as exc:
        log.error("worker.unreadable_entry", field=exc.field, rule=exc.rule, reason=exc.message)
        return None, None


async def prepare(runtime: Runtime, pairs: Iterable[tuple[str, str]]) -> None:
    """Connect, create the tables and the consumer groups (at the start of each stream)."""
    await runtime.connect()
    await runtime.db.create_all()
    for stream, group in pairs:
        await ensure_group(runtime.redis, stream, group)


@contextlib.asynccontextmanager
async def running(runtime: Runtime, roles: Iterable[str] = ROLES):  # type: ignore[no-untyped-def]
    """Run the given roles until the block exits; the relay runs beside them."""
    pairs = register_workers(runtime, roles)
    await prepare(runtime, pairs)
    await runtime.broker.start()
    relay_task = asyncio.create_task(runtime.relay.run(), name="outbox-relay")
    try:
        yield runtime
    finally:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
        await runtime.broker.stop()
