"""The migrations' tests start from a database with nothing in it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marketplace.adapters.database import Database
from marketplace.settings import Settings


@pytest.fixture
async def empty_db(settings: Settings) -> AsyncIterator[Database]:
    """The test's own database (own schema on PostgreSQL) with nothing in it."""
    db = Database.of(settings)
    yield db
    await db.drop_schema()
    await db.dispose()
