"""The notifier: secure messages (SDK style) for the cases, routed by a marketplace that cannot
read them.

Three inputs, one consumer group (`notifier`):

- `cases` (`case.state_changed`): the marketplace's own notices, sealed and signed by it. A held
  match is told to the providing unit and to the requesting region (`match.notice`, ids only); a
  released hold is told to the provider (`match.released`) when the lifecycle says so.
- `sdk:submitted` (`sdk.message.submitted`): a party's own system hands over a sealed message
  (referral, referral answer, care report, follow-up, invoice). The marketplace checks what it
  can without decrypting (signature, sender, recipient, the case's state) and routes it to the
  recipient's inbox, or refuses it with a REJECTED receipt it signs itself. A referral is routed
  only once the provider and the patient have accepted (staged release), and sends the case to
  `referred` (`SendReferral`) in the same transaction.
- `sdk:receipts` (`sdk.receipt.submitted`): a recipient's signed receipt. The first one settles
  its message; every one goes on the case's timeline and back to the message's sender; an
  ACCEPTED receipt for a referral acknowledges it (`AcknowledgeReferral`).

Everything that leaves goes through the outbox in the handler's transaction, and every message
sent and receipt received is mirrored, ids only, on the messages stream for the timelines.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import structlog
from sqlalchemy import Table
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import (
    CaseStateChanged,
    Envelope,
    SecureMessageSubmitted,
    SecureReceiptDelivered,
    new_envelope,
)
from events.envelope import stable_event_id
from marketplace.adapters.message_orm import MessageReceiptRow, SecureMessageRow, already_recorded
from marketplace.adapters.orm import CaseRow, MatchRow
from marketplace.adapters.outbox import stage
from marketplace.adapters.seen_messages import DatabaseSeenMessages
from marketplace.lifecycle import CaseState, CaseStatus, DomainError, SendReferral, decide
from marketplace.lifecycle.message_routes import route_refusal
from marketplace.services.context import ServiceContext
from marketplace.services.delivery import Courier, OutboxDelivery, b64
from marketplace.services.directory import MARKETPLACE_ORG, Federation, UnknownUnit
from marketplace.services.inbound import fresh_events, party_events
from marketplace.services.lifecycle import CaseLedger
from notifiers import crypto
from notifiers.address_book import AddressBook, OrganisationEntry
from notifiers.envelope import SealedMessage, compose, verify_message
from notifiers.message_types import MatchNotice, MatchReleased
from notifiers.receipts import (
    MessageRejected,
    ReceiptDetail,
    new_receipt,
    receipt_received_payload,
    sign_receipt,
)

CONSUMER = "notifier"
RECEIPTS: Table = MessageReceiptRow.__table__  # type: ignore[attr-defined]
log = structlog.get_logger(__name__)



class Notice(NamedTuple):
    """One of the marketplace's own messages to send: what, to whom, at which address, for which case."""

    body: MatchNotice | MatchReleased
    recipient: OrganisationEntry
    address: str | None
    case_ref: str
    message_id: uuid.UUID  # derived from the case event, so a redelivery finds it sent
    label: str


def verify_sealed(raw: bytes, book: AddressBook) -> SealedMessage:
    """Check a sealed message's form and its sender's signature, without decrypting anything.

    `notifiers.envelope.verify_message`: size, the JOSE form, then the signature over the bytes
    as received, and only then is anything the routing header says believed.
    """
    return verify_message(raw, book)


class Notifier:
    """The notifier's three handlers, sharing the federation and the courier."""

    def __init__(self, federation: Federation, courier: Courier | None = None) -> None:
        self.federation = federation
        self.courier = courier or Courier(lambda session, ctx: OutboxDelivery(
            session, ctx, federation.book, refresh=federation.fresh_book))

    # --- cases: the marketplace's own notices ----------------------------------------------

    async def on_cases(self, session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
        """A batch of case events: what the notices need is read with one query per table, the
        notices are composed, and their rows and outbox entries go out with the batch's commit."""
        changes = [payload for _, payload in await fresh_events(session, CONSUMER, items)
                   if isinstance(payload, CaseStateChanged)]
        held = [c for c in changes if _is_match_held(c)]
        released = [c for c in changes if c.event_type == "case.hold_released" and c.details.get("notify_provider")]
        notices: list[Notice] = []
        notices += await self._match_notices(session, held)
        notices += [n for c in released if (n := self._release_notice(c)) is not None]
        sent = await already_recorded(session, SecureMessageRow.message_id, [n.message_id for n in notices])
        for n in notices:
            # The id is derived from the case event, so a redelivered event finds its message sent.
            if str(n.message_id) in sent:
                continue
            sent.add(str(n.message_id))
            sealed = compose(n.body, sender=self.federation.signer, recipient=n.recipient,
                             recipient_address=n.address, conversation_id=n.case_ref, label=n.label,
                             message_id=n.message_id, created_at=ctx.clock())
            await self.courier.enqueue(session, ctx, sealed, case_ref=n.case_ref, submitted_by=CONSUMER)

    async def _match_notices(self, session: AsyncSession, changes: list[CaseStateChanged]) -> list[Notice]:
        """A held match is told to the providing unit and to the requesting region."""
        if not changes:
            return []
        # Per event, not per case: a case held, released and held again in one batch has two matches.
        match_ids = [_text(c.details.get("match_id")) for c in changes]
        lacking = sorted({c.case_ref for c, mid in zip(changes, match_ids, strict=True) if mid is None})
        if lacking:
            # Before the lifecycle put the match id in the event, the case row had it.
            current = dict((await session.exec(select(CaseRow.case_ref, CaseRow.current_match_id).where(
                col(CaseRow.case_ref).in_(lacking)))).all())
            match_ids = [mid or current.get(c.case_ref) for c, mid in zip(changes, match_ids, strict=True)]
        wanted = sorted({mid for mid in match_ids if mid})
        matches = {m.match_id: m for m in (await session.exec(
            select(MatchRow).where(col(MatchRow.match_id).in_(wanted)))).all()} if wanted else {}
        out: list[Notice] = []
        for change, match_id in zip(changes, match_ids, strict=True):
            match = matches.get(match_id) if match_id else None
            if match is None:
                log.error("notifier.match_unknown", case_ref=change.case_ref, match_id=match_id)
                continue
            provider = self._provider_entry(match.unit_hsa_id, match.providing_region)
            home = self.federation.region(match.requesting_region)
            body = MatchNotice(match_id=match.match_id, case_ref=match.case_ref, offer_id=match.offer_id,
                               request_id=match.request_id)
            parties: list[tuple[str, OrganisationEntry | None, str | None]] = [
                ("provider", provider, match.unit_hsa_id if provider and match.unit_hsa_id in provider.addresses
                 else None),
                ("home", home, None),
            ]
            for role, entry, address in parties:
                if entry is None:
                    log.error("notifier.party_unknown", case_ref=match.case_ref, match_id=match.match_id, role=role)
                    continue
                out.append(Notice(body, entry, address, change.case_ref,
                                  stable_event_id("sdk", MatchNotice.TYPE, match.match_id, role), "Matchning"))
        return out

    def _release_notice(self, change: CaseStateChanged) -> Notice | None:
        d = change.details
        match_id, offer_id = _text(d.get("match_id")), _text(d.get("offer_id"))
        unit, region = _text(d.get("unit_hsa_id")), _text(d.get("providing_region"))
        if not (match_id and offer_id and unit and region):
            log.error("notifier.release_incomplete", case_ref=change.case_ref, match_id=match_id)
            return None
        entry = self._provider_entry(unit, region)
        if entry is None:
            log.error("notifier.party_unknown", case_ref=change.case_ref, match_id=match_id, role="provider")
            return None
        body = MatchReleased(match_id=match_id, case_ref=change.case_ref, offer_id=offer_id,
                             cause=_text(d.get("cause")) or "released", referral_id=_text(d.get("referral_id")))
        return Notice(body, entry, unit if unit in entry.addresses else None, change.case_ref,
                      stable_event_id("sdk", MatchReleased.TYPE, match_id), "Matchning avbruten")

    def _provider_entry(self, unit_hsa_id: str, region_code: str) -> OrganisationEntry | None:
        try:
            return self.federation.unit(unit_hsa_id, region_code)
        except UnknownUnit as exc:
            # The region is still told, at its brokering function's address.
            log.warning("notifier.unit_unresolved", unit=unit_hsa_id, region=region_code, reason=str(exc))
            return self.federation.region(region_code)

    # --- submissions: the parties' sealed messages --------------------------------------------

    async def on_submissions(self, session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> None:
        submissions = await party_events(session, items, ctx, SecureMessageSubmitted, CONSUMER)
        # The batch's cases are read once, and a referral's command decided on the state read.
        ledger = CaseLedger(session, ctx)
        await ledger.load(p.case_ref for _, p in submissions if isinstance(p, SecureMessageSubmitted))
        for envelope, payload in submissions:
            assert isinstance(payload, SecureMessageSubmitted)
            await self._route(session, ctx, ledger, envelope, payload)

    async def _route(self, session: AsyncSession, ctx: ServiceContext, ledger: CaseLedger, envelope: Envelope,
                     submitted: SecureMessageSubmitted) -> None:
        book = self.federation.book
        state: CaseState | None = None
        try:
            try:
                raw = crypto.b64decode_strict(submitted.sealed)
            except ValueError as exc:
                raise MessageRejected(ReceiptDetail.STRUCTURE, f"sealed: {exc}") from None
            sealed = verify_sealed(raw, book)
            header = sealed.header
            submitter = self.federation.region(envelope.producer)
            if submitter is None or submitter.org_number != header.sender_org:
                raise _rejected(ReceiptDetail.FORBIDDEN, sealed,
                                f"{header.sender_org} may not be submitted by producer {envelope.producer!r}")
            if header.conversation_id != submitted.case_ref:
                raise _rejected(ReceiptDetail.INVARIANT, sealed, "conversation_id must be the case_ref")
            duplicate = _rejected(ReceiptDetail.DUPLICATE, sealed, f"message {header.message_id} was already submitted")
            # Before the case's state: a repeated referral must be told "duplicate", not "already referred".
            if await session.get(SecureMessageRow, str(header.message_id)) is not None:
                raise duplicate
            state = await ledger.state(submitted.case_ref)
            if state is None:
                raise _rejected(ReceiptDetail.NOT_FOUND, sealed, f"no case {submitted.case_ref}")
            self._check_parties(state, sealed)
            command = await self._check_case(session, ctx, state, sealed, envelope)
            # The atomic claim, last and before any write: of two concurrent submissions one routes.
            if not await DatabaseSeenMessages(session, MARKETPLACE_ORG).add_if_new(header.message_id):
                raise duplicate
        except MessageRejected as rejection:
            await self._refuse(session, ctx, envelope, submitted, rejection, known_case=state is not None)
            return
        if command is not None:
            await ledger.apply(command, correlation_id=envelope.correlation_id, producer=CONSUMER)
        await self.courier.enqueue(session, ctx, sealed, case_ref=submitted.case_ref,
                                   submitted_by=envelope.producer)

    def _check_parties(self, state: CaseState, sealed: SealedMessage) -> None:
        """Sender and recipient are the parties this type goes between now (lifecycle/message_routes.py),
        at a listed address."""
        header = sealed.header
        match = state.match
        regions = {code: self.federation.region(code) for code in
                   (state.home_region, *((match.providing_region,) if match is not None else ()))}
        assert all(regions.values()), "the case's regions are in the address book"
        refused = route_refusal(header.message_type, header.sender_org, header.recipient_org,
                                header.recipient_address, state, {c: r.org_number for c, r in regions.items() if r})
        if refused is not None:
            raise _rejected(refused.detail, sealed, refused.reason)
        assert match is not None
        if header.message_type == "referral":
            try:
                self.federation.unit(match.unit_hsa_id, match.providing_region)
            except UnknownUnit as exc:
                raise _rejected(ReceiptDetail.NOT_FOUND, sealed, str(exc)) from None
        if self.federation.entry_with_address(header.recipient_org, header.recipient_address) is None:
            raise _rejected(ReceiptDetail.NOT_FOUND, sealed, f"no functional address {header.recipient_address}")

    async def _check_case(self, session: AsyncSession, ctx: ServiceContext, state: CaseState, sealed: SealedMessage,
                          envelope: Envelope) -> SendReferral | None:
        """The case allows this message now; a referral returns the command it takes the case on by."""
        header = sealed.header
        if header.message_type == "referral":
            command = SendReferral(state.case_ref, referral_id=str(header.message_id), command_id=envelope.event_id)
            try:
                decide(state, command, ctx.clock(), ctx.policy)  # pure: only asks whether it would be allowed
            except DomainError as exc:
                raise _rejected(ReceiptDetail.FORBIDDEN, sealed, str(exc)) from None
            return command
        if header.message_type == "referral.answer":
            answered = await session.get(SecureMessageRow, str(header.in_reply_to))
            if answered is None or answered.message_type != "referral" or answered.case_ref != state.case_ref:
                raise _rejected(ReceiptDetail.NOT_FOUND, sealed, f"no referral {header.in_reply_to} in this case")
        return None

    async def _refuse(self, session: AsyncSession, ctx: ServiceContext, envelope: Envelope,
                      submitted: SecureMessageSubmitted, rejection: MessageRejected, *, known_case: bool) -> None:
        """Tell the submitter why, in a receipt the marketplace signs (and on the case's timeline)."""
        receipt = sign_receipt(new_receipt(MARKETPLACE_ORG, message_id=rejection.message_id,
                                           recipient_org=rejection.sender_org, rejection=rejection, now=ctx.clock()),
                               self.federation.signer)
        submitter = self.federation.region(envelope.producer)
        # The submitter is told; if it is no region, the signer (verified or not, as SDK does).
        target = submitter.org_number if submitter is not None else rejection.sender_org
        log.warning("message.refused", submission_id=str(envelope.event_id), producer=envelope.producer,
                    message_id=str(rejection.message_id) if rejection.message_id else None,
                    code=rejection.code.value, detail=rejection.detail.value, reason=rejection.reason)
        if target is not None:
            delivered = SecureReceiptDelivered(message_id=str(rejection.message_id) if rejection.message_id else None,
                                               receipt=b64(receipt.to_bytes()))
            stage(session, new_envelope(delivered, producer=CONSUMER, correlation_id=envelope.correlation_id,
                                        event_id=stable_event_id("sdk.refused", envelope.event_id)),
                  ctx.streams.inbox(target))
        if known_case and rejection.message_id is not None:
            received = receipt_received_payload(receipt.receipt, submitted.case_ref)
            stage(session, new_envelope(received, producer=CONSUMER, correlation_id=envelope.correlation_id,
                                        event_id=stable_event_id("receipt.received", receipt.receipt.receipt_id)),
                  ctx.streams.messages)

    # --- input from parties ----------------------------------------------------------------



def _rejected(detail: ReceiptDetail, sealed: SealedMessage, reason: str) -> MessageRejected:
    return MessageRejected(detail, reason, message_id=sealed.header.message_id, sender_org=sealed.header.sender_org)


def _is_match_held(change: CaseStateChanged) -> bool:
    # Before the lifecycle named its events, a proposal was only a change of state.
    return change.event_type == "case.match_held" or (
        not change.event_type and change.to_state == CaseStatus.MATCH_PROPOSED.value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
