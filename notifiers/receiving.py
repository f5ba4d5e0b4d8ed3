"""The receiving side: one raw message in, one signed business receipt out (and the body if
accepted). A message is accepted at most once per message id."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from typing import Protocol

from notifiers.address_book import AddressBook
from notifiers.envelope import OpenedMessage, open_message
from notifiers.keystore import OrganisationKeys
from notifiers.receipts import MessageRejected, ReceiptDetail, SignedReceipt, new_receipt, sign_receipt


class SeenMessages(Protocol):
    """The message ids already accepted. Must be atomic: of two concurrent calls with the same id,
    exactly one gets True."""

    def add_if_new(self, message_id: uuid.UUID) -> bool: ...


class InMemorySeenMessages:
    def __init__(self) -> None:
        self._seen: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def add_if_new(self, message_id: uuid.UUID) -> bool:
        with self._lock:
            if message_id in self._seen:
                return False
            self._seen.add(message_id)
            return True

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._seen

    def __len__(self) -> int:
        return len(self._seen)


def receive(
    raw: bytes,
    recipient: OrganisationKeys,
    address_book: AddressBook,
    seen: SeenMessages,
    *,
    now: datetime | None = None,
) -> tuple[SignedReceipt, OpenedMessage | None]:
    """Open `raw` for `recipient` and answer it with a receipt signed by `recipient`.

    Returns the receipt and, only if ACCEPTED, the opened message. The id is recorded in `seen`
    only once the message has passed every check, so a rejected message does not block a
    corrected one; a second delivery of an accepted message is REJECTED duplicate and its body is
    not returned again. Failures of our own (an unreadable key store) raise instead of being
    blamed on the sender.
    """
    try:
        opened = open_message(raw, recipient, address_book)
        header = opened.header
        if not seen.add_if_new(header.message_id):
            raise MessageRejected(ReceiptDetail.DUPLICATE,
                                  f"message {header.message_id} was already received",
                                  message_id=header.message_id, sender_org=header.sender_org)
    except MessageRejected as rejection:
        receipt = new_receipt(recipient.organisation, message_id=rejection.message_id,
                              recipient_org=rejection.sender_org, rejection=rejection, now=now)
        return sign_receipt(receipt, recipient), None
    receipt = new_receipt(recipient.organisation, message_id=header.message_id,
                          recipient_org=header.sender_org, now=now)
    return sign_receipt(receipt, recipient), opened
