"""The regions' own systems: one key store each, the shared address book, their receiving agents.

Each organisation's agent takes what its inbox holds (XREAD BLOCK, as its region's own Redis user),
opens it with its own key store and answers with a signed receipt (and, for a referral, the unit's
answer), all of a batch in one pipelined round trip. The seen-message sets are the agents' own,
kept in memory (a real system keeps them in its own store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from demo_regions.bus import Connections, Outgoing, keep_reading, send, text_id
from demo_regions.outcome import PartyOutcome
from events import (
    CaseCommandIssued,
    SecureMessageDelivered,
    SecureMessageSubmitted,
    SecureReceiptDelivered,
    SecureReceiptSubmitted,
    Streams,
)
from events.envelope import DATA_FIELD, parse_envelope
from marketplace.lifecycle.swedish_time import swedish_date
from matchers.reference import regions
from notifiers.address_book import AddressBook, OrganisationEntry
from notifiers.book_file import AddressBookFile
from notifiers.envelope import OpenedMessage, compose, open_message
from notifiers.keystore import KeyStore
from notifiers.message_types import MessageBody, Referral, ReferralAnswer
from notifiers.provisioning import open_key_store
from notifiers.receipts import (
    MessageRejected,
    ReceiptDetail,
    ReceiptInvalid,
    ReceiptStatus,
    new_receipt,
    sign_receipt,
    verify_receipt,
)
from notifiers.receiving import InMemorySeenMessages

log = structlog.get_logger(__name__)


class Federation:
    """The regions' systems: their key stores (provisioned in `key_dir`), the address book, sending."""

    def __init__(self, parties: Connections, streams: Streams, key_dir: Path, start_id: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # The systems' own clock: what they write and sign is dated by it (the demo's is simulated).
        self.clock = clock
        # Each region's system speaks as its own Redis user.
        self.parties = parties
        self.streams = streams
        self.key_dir = key_dir
        # The shared address book, looked at afresh whenever it changed: the marketplace lists a
        # unit when it first routes to it, and a copy read before that must not refuse the unit.
        self._book_file = AddressBookFile(key_dir)
        self.codes = {r.code: r.org_number for r in regions().values()}
        self.stores = {org: open_key_store(key_dir, org) for org in self.codes.values()}
        self._last = {org: start_id for org in self.codes.values()}

    @property
    def book(self) -> AddressBook:
        return self._book_file.current()

    def org(self, code: str) -> OrganisationEntry:
        entry = self.book.get(self.codes[code])
        assert entry is not None
        return entry

    def code_of(self, org_number: str) -> str:
        return next(code for code, org in self.codes.items() if org == org_number)

    async def publish_many(self, producer: str, items: list[Outgoing]) -> None:
        """(stream, payload, id key) entries sent as `producer`, pipelined in one round trip."""
        await send(self.parties, producer, items)

    async def command(self, case_ref: str, command: str, producer: str, **args: Any) -> None:
        await self.publish_many(producer, [(self.streams.ingress(producer),
                                            CaseCommandIssued(case_ref=case_ref, command=command, args=args),
                                            (case_ref, command))])

    def sealed(self, body: MessageBody, *, sender_code: str, recipient: OrganisationEntry, case_ref: str,
               address: str | None = None, in_reply_to: Any = None, label: str = "") -> Outgoing:
        """The submission of `body`, sealed by `sender_code`'s system: (stream, payload, id key)."""
        sealed = compose(body, sender=self.stores[self.codes[sender_code]], recipient=recipient,
                         recipient_address=address, conversation_id=case_ref, in_reply_to=in_reply_to, label=label,
                         created_at=self.clock())
        payload = SecureMessageSubmitted(case_ref=case_ref, sealed=base64.b64encode(sealed.to_bytes()).decode())
        return self.streams.secure_submissions(sender_code), payload, (case_ref, body.TYPE, sealed.header.message_id)

    async def submit(self, body: MessageBody, *, sender_code: str, recipient: OrganisationEntry, case_ref: str,
                     address: str | None = None, in_reply_to: Any = None, label: str = "") -> None:
        await self.publish_many(sender_code, [self.sealed(body, sender_code=sender_code, recipient=recipient,
                                                          case_ref=case_ref, address=address,
                                                          in_reply_to=in_reply_to, label=label)])


class Agents:
    """Each organisation's receiving agent: opens what its inbox holds, answers with a receipt.

    One reader per organisation blocks on its inbox (XREAD BLOCK, as that region's own Redis
    user) and handles what arrives as a batch, its receipts and answers sent in one pipelined
    round trip."""

    BLOCK_MS = 1000  # how long a read waits before it looks at `stopping` again

    def __init__(self, federation: Federation, outcome: PartyOutcome) -> None:
        self.f = federation
        self.outcome = outcome
        self.referrals: dict[str, str] = {}  # case_ref -> referral message id, as the unit received it
        self.scheduled_for: dict[str, date] = {}  # case_ref -> the day the unit offers in its answer
        self.receipted: set[str] = set()  # ids of the messages sent whose receipts came back
        self.sent: set[str] = set()  # ids of the messages the agents sent themselves (the units' answers)
        self.from_regions: set[str] = set()  # ids of the messages from other regions the agents answered
        # Messages from the marketplace answered since `settled()`: their receipts come back to no one,
        # so only the marketplace's side can tell when it has taken them in.
        self.unsettled = 0
        self.stopping = asyncio.Event()
        self._seen = {org: InMemorySeenMessages() for org in self.f.codes.values()}
        self._changed = asyncio.Condition()
        # One agent opens and signs at a time: the crypto runs on the event loop, and twenty-one
        # agents taking turns with a batch each would starve every other reader of the process.
        self._crunch = asyncio.Lock()

    async def run(self) -> None:
        # Stopped by an event, not a cancel: a cancel landing inside a send could leave a batch
        # half answered.
        await asyncio.gather(*(self._follow(code, org) for code, org in self.f.codes.items()))

    async def _follow(self, code: str, org: str) -> None:
        stream = self.f.streams.inbox(org)
        client = self.f.parties.client(code)

        async def step() -> None:
            found = await client.xread({stream: self.f._last[org]}, count=500, block=self.BLOCK_MS)
            for _, entries in found or ():
                await self._handle(code, org, entries)

        await keep_reading(step, self.stopping, "demo_regions.agent_failed", org=org)

    async def poll(self) -> int:
        """Handle whatever every inbox holds now, without waiting (a last sweep)."""
        handled = 0
        for code, org in self.f.codes.items():
            entries = await self.f.parties.client(code).xrange(self.f.streams.inbox(org),
                                                               min=f"({self.f._last[org]}", count=500)
            if entries:
                handled += await self._handle(code, org, entries)
        return handled

    async def caught_up(self, *, timeout_s: float) -> bool:
        """Until every agent has handled everything its inbox holds now; False if one has not
        within `timeout_s`."""
        codes = list(self.f.codes.items())
        # Each region asks its own inbox (as its own user), all at once.
        newest = await asyncio.gather(*(self.f.parties.client(code).xrevrange(self.f.streams.inbox(org), count=1)
                                        for code, org in codes))
        tails = {org: text_id(found[0][0]) for (_, org), found in zip(codes, newest, strict=True) if found}

        def behind() -> bool:
            return any(_after(tail, self.f._last[org]) for org, tail in tails.items())

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: not behind()), timeout=timeout_s)
        return not behind()

    def unreceipted(self) -> set[str]:
        """The messages between regions the agents sent or answered whose receipts have not come back."""
        return (self.sent | self.from_regions) - self.receipted

    async def until_receipted(self, message_ids: Iterable[str], *, timeout_s: float) -> bool:
        """Until the receipts of all these messages came back to their senders; False if they did not
        within `timeout_s` of the last one that came."""
        wanted = set(message_ids)
        while True:
            missing = len(wanted - self.receipted)
            if not missing:
                return True

            def fewer(than: int = missing) -> bool:
                return len(wanted - self.receipted) < than

            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(fewer), timeout=timeout_s)
                except TimeoutError:
                    log.warning("demo_regions.receipts_missing", messages=missing)
                    return False

    async def _handle(self, code: str, org: str, entries: list[Any]) -> int:
        store: KeyStore = self.f.stores[org]
        # The book as it is now: a unit listed a moment ago must be found (see `Federation.book`).
        book = self.f.book
        out: list[Outgoing] = []
        async with self._crunch:
            for i, (_, fields) in enumerate(entries):
                if i % 20 == 19:
                    # Let the other readers' replies in between, or a batch of hundreds on a busy
                    # machine outlasts their read timeouts.
                    await asyncio.sleep(0)
                _, payload = parse_envelope(fields[DATA_FIELD.encode()])
                if isinstance(payload, SecureMessageDelivered):
                    try:
                        message: OpenedMessage | None = open_message(base64.b64decode(payload.sealed), store, book)
                        refusal: MessageRejected | None = None
                    except MessageRejected as refused:
                        message, refusal = None, refused
                    if message is not None and not self._seen[org].add_if_new(message.header.message_id):
                        header = message.header
                        message, refusal = None, MessageRejected(
                            ReceiptDetail.DUPLICATE, f"message {header.message_id} was already received",
                            message_id=header.message_id, sender_org=header.sender_org)
                    out += self._answer(code, org, store, book, message, refusal)
                elif isinstance(payload, SecureReceiptDelivered):
                    self._receipt(payload, book)
        await self.f.publish_many(code, out)
        self.f._last[org] = text_id(entries[-1][0])
        async with self._changed:
            self._changed.notify_all()
        return len(entries)

    def _answer(self, code: str, org: str, store: KeyStore, book: AddressBook, message: OpenedMessage | None,
                rejection: MessageRejected | None) -> list[Outgoing]:
        """The signed receipt for one message (and, for a referral, the unit's answer)."""
        if message is not None:
            receipt = new_receipt(org, message_id=message.header.message_id, recipient_org=message.header.sender_org,
                                  now=self.f.clock())
        else:
            assert rejection is not None
            receipt = new_receipt(org, message_id=rejection.message_id, recipient_org=rejection.sender_org,
                                  rejection=rejection, now=self.f.clock())
            log.warning("demo_regions.message_refused_by_receiver", org=org, reason=rejection.reason,
                        message_id=str(rejection.message_id) if rejection.message_id else None)
        signed = sign_receipt(receipt, store)
        sender = message.header.sender_org if message is not None else rejection.sender_org if rejection else None
        if sender in self.f.codes.values() and receipt.message_id is not None:
            self.from_regions.add(str(receipt.message_id))
        else:
            self.unsettled += 1
        self.outcome.messages_received += 1
        self.outcome.receipts_returned += 1
        out: list[Outgoing] = [(
            self.f.streams.secure_receipts(code),
            SecureReceiptSubmitted(receipt=base64.b64encode(signed.to_bytes()).decode()),
            ("receipt", signed.receipt.receipt_id))]
        if message is None or not isinstance(message.body, Referral):
            return out
        referral = message.body
        # What the unit reads is for the unit: it checks the body belongs to the case it was told of.
        if referral.case_ref != message.header.conversation_id:
            return out
        self.outcome.referrals_opened += 1
        self.referrals[referral.case_ref] = str(message.header.message_id)
        home = book.get(message.header.sender_org)
        assert home is not None
        answer = ReferralAnswer(match_id=referral.match_id, case_ref=referral.case_ref, decision="accepted",
                                scheduled_for=self.scheduled_for.get(
                                    referral.case_ref, swedish_date(message.header.created_at) + timedelta(days=14)))
        sealed = self.f.sealed(answer, sender_code=code, recipient=home, case_ref=referral.case_ref,
                               in_reply_to=message.header.message_id, label="Svar på remiss")
        self.sent.add(str(sealed[2][2]))
        out.append(sealed)
        return out

    def _receipt(self, delivered: SecureReceiptDelivered, book: AddressBook) -> None:
        self.receipted.add(str(delivered.message_id))
        try:
            receipt = verify_receipt(base64.b64decode(delivered.receipt), book)
        except ReceiptInvalid:
            log.warning("demo_regions.receipt_invalid", message_id=delivered.message_id)
            return
        self.outcome.receipts_read += 1
        if receipt.status is ReceiptStatus.REJECTED:
            self.outcome.refusals += 1
            log.warning("demo_regions.message_refused", message_id=delivered.message_id,
                        code=receipt.code, detail=receipt.detail, reason=receipt.reason)


def _after(a: str, b: str) -> bool:
    """Whether stream entry id `a` comes after `b`."""
    ams, _, aseq = a.partition("-")
    bms, _, bseq = b.partition("-")
    return (int(ams), int(aseq or 0)) > (int(bms), int(bseq or 0))
