"""The notifier's receipts (`sdk.receipt.submitted`): a recipient's signed receipt.

The first one settles its message; every one goes on the case's timeline and back to the message's
sender; an ACCEPTED receipt for a referral acknowledges it (`AcknowledgeReferral`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import structlog
from sqlalchemy import Table, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import Envelope, SecureReceiptDelivered, SecureReceiptSubmitted, new_envelope
from events.envelope import stable_event_id
from marketplace.adapters.appends import append
from marketplace.adapters.message_orm import MessageReceiptRow, SecureMessageRow, already_recorded
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import AcknowledgeReferral, DomainError
from marketplace.services.context import ServiceContext
from marketplace.services.delivery import Courier
from marketplace.services.directory import MARKETPLACE_ORG, Federation
from marketplace.services.inbound import party_events
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.refusals import reject
from notifiers import crypto
from notifiers.receipts import Receipt, ReceiptInvalid, ReceiptStatus, receipt_received_payload, verify_receipt

CONSUMER = "notifier"
RECEIPTS: Table = MessageReceiptRow.__table__  # type: ignore[attr-defined]
SECURE_MESSAGES: Table = SecureMessageRow.__table__  # type: ignore[attr-defined]
log = structlog.get_logger(__name__)


class _Message(NamedTuple):
    """What a receipt needs of the message it answers."""

    message_id: str
    case_ref: str
    message_type: str
    sender_org: str
    recipient_org: str
    receipt_status: str | None


_MESSAGE_COLUMNS = tuple(getattr(SECURE_MESSAGES.c, name) for name in _Message._fields)


class _Answer(NamedTuple):
    """What the first receipt of a message writes on its row."""

    receipt_status: str
    receipt_code: str | None
    receipt_detail: str | None
    status: str


async def _settle(session: AsyncSession, settled: dict[_Answer, list[str]]) -> None:
    """Settle the messages `settled` lists under each answer: one UPDATE per distinct answer (nearly
    always one, ACCEPTED, for a whole batch) rather than one per message. Issued through the session,
    so a message row it holds as an object (one retried in this transaction) is brought up to date."""
    for answer, message_ids in settled.items():
        # The WHERE keeps a receipt another notifier recorded meanwhile the answer.
        await session.exec(update(SecureMessageRow)
                           .where(col(SecureMessageRow.message_id).in_(message_ids),
                                  col(SecureMessageRow.receipt_status).is_(None))
                           .values(**answer._asdict()))


class Receipts:
    """The receipts handler, sharing the notifier's federation and courier."""

    def __init__(self, federation: Federation, courier: Courier) -> None:
        self.federation = federation
        self.courier = courier

    async def on_receipts(self, session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
        """A batch of receipts: each verified (no I/O), then the messages and receipts they name read
        with one query per table; new receipt rows are appended in bulk with the commit, and the
        messages the batch settles are updated in one statement."""
        checked: list[tuple[Envelope, SecureReceiptSubmitted, Receipt]] = []
        for envelope, payload in await party_events(session, items, ctx, SecureReceiptSubmitted, CONSUMER):
            assert isinstance(payload, SecureReceiptSubmitted)
            receipt = self._verified_receipt(session, ctx, envelope, payload)
            if receipt is not None:
                checked.append((envelope, payload, receipt))
        message_ids = sorted({str(r.message_id) for _, _, r in checked if r.message_id})
        # Plain rows, not ORM objects: a batch reads hundreds and changes four columns of each,
        # which one UPDATE below does for all of them.
        rows = {row.message_id: _Message._make(row) for row in (await session.exec(select(*_MESSAGE_COLUMNS).where(
            col(SecureMessageRow.message_id).in_(message_ids)))).all()} if message_ids else {}
        recorded = await already_recorded(session, MessageReceiptRow.receipt_id, [r.receipt_id for _, _, r in checked])
        # The cases a receipt may acknowledge a referral of, read once for the batch.
        ledger = CaseLedger(session, ctx)
        await ledger.load(row.case_ref for row in rows.values() if row.message_type == "referral")
        settled: dict[_Answer, list[str]] = {}
        for envelope, submitted, receipt in checked:
            await self._receipt(session, ctx, ledger, envelope, submitted, receipt, rows, recorded, settled)
        await _settle(session, settled)

    def _verified_receipt(self, session: AsyncSession, ctx: ServiceContext, envelope: Envelope,
                          submitted: SecureReceiptSubmitted) -> Receipt | None:
        try:
            receipt = verify_receipt(crypto.b64decode_strict(submitted.receipt), self.federation.book)
        except (ValueError, ReceiptInvalid) as exc:
            self._refuse_receipt(session, ctx, envelope, "payload.receipt", "signed_receipt", str(exc)[:300])
            return None
        issuer = self.federation.region(envelope.producer)
        if issuer is None or issuer.org_number != receipt.issuer_org:
            self._refuse_receipt(session, ctx, envelope, "producer", "receipt_issuer",
                                 f"{envelope.producer!r} may not submit receipts of {receipt.issuer_org}")
            return None
        return receipt

    def _refuse_receipt(self, session: AsyncSession, ctx: ServiceContext, envelope: Envelope, field: str, rule: str,
                        message: str) -> None:
        reject(session, ctx.streams, field=field, rule=rule, message=message, event_id=str(envelope.event_id),
               event_type=envelope.type, producer=envelope.producer, correlation_id=envelope.correlation_id,
               worker=CONSUMER, recipient=ctx.channel)

    async def _receipt(self, session: AsyncSession, ctx: ServiceContext, ledger: CaseLedger, envelope: Envelope,
                       submitted: SecureReceiptSubmitted, receipt: Receipt,
                       rows: dict[str, _Message], recorded: set[str], settled: dict[_Answer, list[str]]) -> None:
        row = rows.get(str(receipt.message_id)) if receipt.message_id else None
        if row is None or row.recipient_org != receipt.issuer_org:
            self._refuse_receipt(session, ctx, envelope, "payload.receipt", "known_message",
                                 f"{receipt.issuer_org} was sent no message {receipt.message_id}")
            return
        if str(receipt.receipt_id) in recorded:
            return
        recorded.add(str(receipt.receipt_id))
        append(session, RECEIPTS, {
            "receipt_id": str(receipt.receipt_id), "message_id": row.message_id, "case_ref": row.case_ref,
            "issuer_org": receipt.issuer_org, "status": receipt.status.value,
            "code": receipt.code.value if receipt.code else None,
            "detail": receipt.detail.value if receipt.detail else None,
            "issued_at": receipt.created_at, "received_at": ctx.clock()})
        first = row.receipt_status is None
        if first:
            # The first receipt is the answer; a later one (a duplicate delivery refused) is history.
            rows[row.message_id] = row._replace(receipt_status=receipt.status.value)
            answer = _Answer(receipt.status.value, receipt.code.value if receipt.code else None,
                             receipt.detail.value if receipt.detail else None,
                             "accepted" if receipt.status is ReceiptStatus.ACCEPTED else "rejected")
            settled.setdefault(answer, []).append(row.message_id)
        received = receipt_received_payload(receipt, row.case_ref)
        stage(session, new_envelope(received, producer=CONSUMER, correlation_id=row.case_ref, occurred_at=ctx.clock(),
                                    event_id=stable_event_id("receipt.received", receipt.receipt_id)),
              ctx.streams.messages)
        if row.sender_org != MARKETPLACE_ORG:
            forwarded = SecureReceiptDelivered(message_id=row.message_id, receipt=submitted.receipt)
            stage(session, new_envelope(forwarded, producer=CONSUMER, correlation_id=row.case_ref,
                                        occurred_at=ctx.clock(),
                                        event_id=stable_event_id("sdk.receipt.forwarded", receipt.receipt_id)),
                  ctx.streams.inbox(row.sender_org))
        log.info("receipt.received", message_id=row.message_id, case_ref=row.case_ref,
                 message_type=row.message_type, status=receipt.status.value,
                 detail=receipt.detail.value if receipt.detail else None)
        if first and row.message_type == "referral" and receipt.status is ReceiptStatus.ACCEPTED:
            try:
                await ledger.apply(AcknowledgeReferral(row.case_ref, referral_id=row.message_id,
                                                       command_id=envelope.event_id),
                                   correlation_id=row.case_ref, producer=CONSUMER)
            except DomainError as exc:
                # The case moved on meanwhile (withdrawn, cancelled): the receipt stays recorded.
                log.warning("referral.acknowledgement_refused", case_ref=row.case_ref, message_id=row.message_id,
                            reason=str(exc))
