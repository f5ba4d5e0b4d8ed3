"""What kind of failure: the infrastructure's (retry, never dead-letter) or the entry's."""

from __future__ import annotations

from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """Errors of the infrastructure, not of the entry: they never send an entry to the dead letters."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # asyncpg's own connection errors, when they surface unwrapped
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and "NOGROUP" in str(exc)


def reason_of(exc: Exception) -> str:
    # A pydantic error's text repeats the input, which may be anything a region sent.
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {exc.error_count()} errors, first {exc.errors()[0]['type']}"
    return f"{type(exc).__name__}: {exc}"[:500]
