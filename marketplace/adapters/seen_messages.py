"""`SeenMessages` in the database, and the receiving side of the SDK messages on top of it.

`notifiers.receiving.SeenMessages` is synchronous (the library does no I/O); a database needs an
await, so this is its asynchronous twin with the same contract: of two concurrent calls with the
same id, exactly one gets True. The insert is `INSERT .. ON CONFLICT DO NOTHING` on the primary
key (owner, message_id): atomic on SQLite and PostgreSQL alike, and, being part of the caller's
transaction, a message is recorded as seen exactly when its effect commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.message_orm import SeenMessageRow
from notifiers.address_book import AddressBook
from notifiers.envelope import OpenedMessage, open_message
from notifiers.keystore import OrganisationKeys
from notifiers.receipts import MessageRejected, ReceiptDetail, SignedReceipt, new_receipt, sign_receipt


class AsyncSeenMessages(Protocol):
    async def add_if_new(self, message_id: uuid.UUID) -> bool: ...


class DatabaseSeenMessages:
    """The message ids `owner` (an organisation number) has accepted, kept in `seen_messages`."""

    def __init__(self, session: AsyncSession, owner: str) -> None:
        self._session = session
        self._owner = owner

    async def add_if_new(self, message_id: uuid.UUID) -> bool:
        bind: Any = self._session.bind
        insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
        statement = insert(SeenMessageRow).values(owner=self._owner, message_id=str(message_id))
        statement = statement.on_conflict_do_nothing(index_elements=["owner", "message_id"])
        result: Any = await self._session.exec(statement)
        return bool(result.rowcount == 1)

    async def add_new(self, message_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Record a batch of ids in one statement; returns those that were new. An id twice in the
        batch is new at most once (the caller takes its first occurrence)."""
        if not message_ids:
            return set()
        bind: Any = self._session.bind
        insert = pg_insert if bind.dialect.name == "postgresql" else sqlite_insert
        statement: Any = (insert(SeenMessageRow)
                     .values([{"owner": self._owner, "message_id": str(m)} for m in dict.fromkeys(message_ids)])
                     .on_conflict_do_nothing(index_elements=["owner", "message_id"])
                     .returning(SeenMessageRow.__table__.c.message_id))  # type: ignore[attr-defined]
        result: Any = await self._session.exec(statement)
        return {uuid.UUID(row[0]) for row in result.all()}


async def receive(raw: bytes, recipient: OrganisationKeys, address_book: AddressBook, seen: AsyncSeenMessages,
                  *, now: datetime | None = None) -> tuple[SignedReceipt, OpenedMessage | None]:
    """`notifiers.receiving.receive` with an asynchronous seen-set: open, refuse a repeated id as
    duplicate (its body is not returned again), answer with a receipt signed by `recipient`."""
    try:
        opened = open_message(raw, recipient, address_book)
        header = opened.header
        if not await seen.add_if_new(header.message_id):
            raise MessageRejected(ReceiptDetail.DUPLICATE, f"message {header.message_id} was already received",
                                  message_id=header.message_id, sender_org=header.sender_org)
    except MessageRejected as rejection:
        receipt = new_receipt(recipient.organisation, message_id=rejection.message_id,
                              recipient_org=rejection.sender_org, rejection=rejection, now=now)
        return sign_receipt(receipt, recipient), None
    receipt = new_receipt(recipient.organisation, message_id=header.message_id, recipient_org=header.sender_org,
                          now=now)
    return sign_receipt(receipt, recipient), opened
