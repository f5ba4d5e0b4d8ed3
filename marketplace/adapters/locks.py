"""One writer per book partition: a Redis lock with a fencing token, checked by the database.

The lock (`SET key value NX PX ttl`, renewed while held) decides who *should* write; it cannot
stop a holder that paused past its TTL and woke up still believing it holds the lock. So each
acquisition also takes a token from a counter that only grows (INCR), and every transaction that
writes to the partition first raises the partition's row in `partition_leases` to its token,
refused when a higher token has already written there. A stale holder's write is thereby refused
by the database itself, whatever the lock says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.orm import PartitionLeaseRow

# Acquire: SET NX PX; on success take the next token, never lower than the database's floor (the
# counter is gone if Redis restarted without persistence; the database still knows the highest).
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if token <= floor then
    token = floor + 1
    redis.call('SET', KEYS[2], token)
  end
  redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
  return token
end
return false
"""
# Renew and release only a lock we still hold (same holder and token).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class FencedOut(Exception):
    """A write with a token lower than one that already wrote to the partition."""

    def __init__(self, partition: str, token: int, current: int) -> None:
        super().__init__(f"partition {partition}: token {token} is stale (token {current} has written)")
        self.partition, self.token, self.current = partition, token, current


@dataclass
class FencedLock:
    """The lock of one partition, as one holder sees it."""

    redis: Any
    key: str
    counter_key: str
    holder: str
    ttl_ms: int
    token: int | None = None

    @classmethod
    def for_partition(cls, redis: Any, prefix: str, partition: str, holder: str, ttl_ms: int) -> FencedLock:
        return cls(redis, f"{prefix}:lock:{partition}", f"{prefix}:fence:{partition}", holder, ttl_ms)

    @property
    def _value(self) -> str:
        return f"{self.holder}#{self.token}"

    async def acquire(self, floor: int = 0) -> int | None:
        """The new fencing token, or None when someone else holds the lock."""
        token = await self.redis.eval(_ACQUIRE, 2, self.key, self.counter_key, self.holder, self.ttl_ms, floor)
        self.token = int(token) if token else None
        return self.token

    async def renew(self) -> bool:
        if self.token is None:
            return False
        if await self.redis.eval(_RENEW, 2, self.key, self.counter_key, self._value, self.ttl_ms):
            return True
        self.token = None
        return False

    async def release(self) -> None:
        if self.token is None:
            return
        value, self.token = self._value, None
        await self.redis.eval(_RELEASE, 2, self.key, self.counter_key, value)


async def fence(session: AsyncSession, partition: str, token: int, holder: str) -> None:
    """Record `token` as the partition's writer in the caller's transaction, or raise FencedOut.

    Run it first in the transaction: on PostgreSQL the row lock it takes makes a concurrent writer
    of the same partition wait for this transaction (and then see its effect, or be refused).
    """
    now = datetime.now(UTC)
    result = await session.exec(
        update(PartitionLeaseRow)
        .where(col(PartitionLeaseRow.partition) == partition, col(PartitionLeaseRow.token) <= token)
        .values(token=token, holder=holder, updated_at=now))
    if result.rowcount:
        return
    row = await session.get(PartitionLeaseRow, partition)
    if row is not None:
        raise FencedOut(partition, token, row.token)
    # First write ever to this partition; a concurrent first writer makes this insert conflict,
    # and the caller's retry then meets the row.
    session.add(PartitionLeaseRow(partition=partition, token=token, holder=holder, updated_at=now))
    await session.flush()


async def check_fence(session: AsyncSession, partition: str, token: int) -> None:
    """Raise FencedOut if a newer token than `token` has written to the partition; reads only.

    For a holder that takes entries off the partition's stream without writing: acking them while
    stale would hide them from the new holder, which fenced (and cleared the book) before they came.
    """
    current = await highest_token(session, partition)
    if current > token:
        raise FencedOut(partition, token, current)


async def highest_token(session: AsyncSession, partition: str) -> int:
    row = await session.get(PartitionLeaseRow, partition)
    return row.token if row is not None else 0
