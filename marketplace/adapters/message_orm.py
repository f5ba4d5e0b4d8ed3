"""Tables of the secure messages: the messages the marketplace routes, their receipts, and the
message ids each organisation has already accepted.

Nothing here is readable patient data: a routed message is kept as its sealed wire form (a
readable header of ids, and a body encrypted for the recipient organisation, which the
marketplace cannot decrypt), receipts are ids and codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, Text
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.orm import utcnow

_TZ = DateTime(timezone=True)


class SecureMessageRow(SQLModel, table=True):
    """One secure message to deliver: the message outbox and its delivery state in one row.

    `status` runs queued -> handed_over -> accepted | rejected, with the side exits escalated
    (no receipt by `receipt_due_at`) and dead_lettered (hand-over attempts exhausted).
    """

    __tablename__ = "secure_messages"
    __table_args__ = (Index("ix_secure_messages_due", "status", "next_attempt_at"),)
    message_id: str = Field(primary_key=True, max_length=36)
    case_ref: str = Field(max_length=128, index=True)
    message_type: str = Field(max_length=64)
    sender_org: str = Field(max_length=11)
    recipient_org: str = Field(max_length=11)
    recipient_address: str = Field(max_length=64)
    in_reply_to: str | None = Field(default=None, max_length=36)
    submitted_by: str = Field(max_length=64, description="region code of the submitter, or the notifier")
    sealed: str = Field(sa_type=Text, description="the sealed wire form, base64; the body is encrypted")
    status: str = Field(default="queued", max_length=16, index=True)
    attempts: int = 0
    last_attempt_at: datetime | None = Field(default=None, sa_type=_TZ)
    next_attempt_at: datetime | None = Field(default=None, sa_type=_TZ)
    handed_over_at: datetime | None = Field(default=None, sa_type=_TZ)
    receipt_due_at: datetime | None = Field(default=None, sa_type=_TZ)
    receipt_status: str | None = Field(default=None, max_length=8)
    receipt_code: str | None = Field(default=None, max_length=8)
    receipt_detail: str | None = Field(default=None, max_length=32)
    escalated_at: datetime | None = Field(default=None, sa_type=_TZ)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class MessageReceiptRow(SQLModel, table=True):
    """Every verified receipt that came back, the first of which settles its message."""

    __tablename__ = "message_receipts"
    receipt_id: str = Field(primary_key=True, max_length=36)
    message_id: str = Field(max_length=36, index=True)
    case_ref: str = Field(max_length=128, index=True)
    issuer_org: str = Field(max_length=11)
    status: str = Field(max_length=8)
    code: str | None = Field(default=None, max_length=8)
    detail: str | None = Field(default=None, max_length=32)
    issued_at: datetime = Field(sa_type=_TZ)
    received_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


class SeenMessageRow(SQLModel, table=True):
    """A message id an organisation accepted: the primary key makes "seen" atomic."""

    __tablename__ = "seen_messages"
    owner: str = Field(primary_key=True, max_length=32, description="org number of the receiver")
    message_id: str = Field(primary_key=True, max_length=36)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=_TZ)


async def already_recorded(session: AsyncSession, key: Any, ids: Iterable[object]) -> set[str]:
    """Which of `ids` already have a row, by the primary-key column `key` (one query)."""
    wanted = sorted({str(i) for i in ids})
    if not wanted:
        return set()
    return set((await session.exec(select(key).where(col(key).in_(wanted)))).all())
