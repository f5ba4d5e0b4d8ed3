"""The database-backed seen set: atomic, per receiving organisation, committed with the effect."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from marketplace.adapters.seen_messages import DatabaseSeenMessages

pytestmark = pytest.mark.integration


async def test_an_id_is_new_once_per_owner(database):
    mid = uuid.uuid4()
    async with database.session() as session:
        first = DatabaseSeenMessages(session, "232100-0016")
        assert await first.add_if_new(mid) is True
        assert await first.add_if_new(mid) is False
        assert await DatabaseSeenMessages(session, "232100-0024").add_if_new(mid) is True
        await session.commit()
    async with database.session() as session:
        assert await DatabaseSeenMessages(session, "232100-0016").add_if_new(mid) is False


async def test_a_rolled_back_receipt_leaves_the_id_unseen(database):
    mid = uuid.uuid4()
    async with database.session() as session:
        assert await DatabaseSeenMessages(session, "232100-0016").add_if_new(mid)
        await session.rollback()
    async with database.session() as session:
        assert await DatabaseSeenMessages(session, "232100-0016").add_if_new(mid)


async def test_of_concurrent_receivers_exactly_one_gets_the_message(database):
    mid = uuid.uuid4()

    async def claim() -> bool:
        async with database.session() as session:
            new = await DatabaseSeenMessages(session, "232100-0016").add_if_new(mid)
            await asyncio.sleep(0.05)  # hold the transaction open so the others overlap it
            await session.commit()
            return new

    results = await asyncio.gather(*(claim() for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
