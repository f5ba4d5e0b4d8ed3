"""One transaction of a worker, run again from the start when it lost a race.

Another writer may take a case's next timeline version first (a unique key), or SQLite may be busy:
the transaction left nothing behind, so it is simply run again, a little later each time. Every
other error goes to the caller on the first attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel.ext.asyncio.session import AsyncSession
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_incrementing

from marketplace.adapters.database import Database

TRANSACTION_ATTEMPTS = 5

T = TypeVar("T")
log = structlog.get_logger(__name__)


def _retrying(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.info("worker.transaction_retry", attempt=state.attempt_number, error=type(error).__name__)


async def in_transaction(db: Database, work: Callable[[AsyncSession], Awaitable[T]], *,
                         lock: asyncio.Lock | None = None, attempts: int = TRANSACTION_ATTEMPTS) -> T:
    """`work(session)` in one transaction (under `lock`, if given), committed; retried on a lost race."""
    retrying = AsyncRetrying(stop=stop_after_attempt(attempts), wait=wait_incrementing(0.02, 0.02),
                             retry=retry_if_exception_type((IntegrityError, OperationalError)),
                             before_sleep=_retrying, reraise=True)
    async for attempt in retrying:
        with attempt:
            async with lock or contextlib.nullcontext(), db.session() as session:
                result = await work(session)
                await session.commit()
    return result
