"""The regions' own systems, played for the demo once the clearing round has settled.

For a sample of the placed cases the parties do what the process asks of them, each only through
the bus, as an outside system would: the providing region accepts (a few decline), the home
region offers the slot to the patient and records the answer, composes the referral with the
patient's identity and a clinical summary, sealed for the providing organisation, and submits it;
the unit's agent takes it from its organisation's inbox with its own key store and returns a
signed receipt and its answer; the provider schedules, performs, follows up and invoices (with
the secure messages that go with each step), and the home region pays. Every organisation's agent
also answers every other message in its inbox (the match notices) with a receipt.

The identities are synthetic: a Swedish-format personal identity number with a valid check digit
and a name, derived from the case reference (`synthetic_identity`), so a test can recompute them
and look for them everywhere they must not be.

Shortcuts a real region system would not take: the parties read their cases' state from the
marketplace's database instead of following the `cases` stream, and the agents keep their
seen-message sets there too (each under its own organisation number).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from sqlmodel import col, select

from events import (
    CaseCommandIssued,
    CaseStateChanged,
    Payload,
    SecureMessageDelivered,
    SecureMessageSubmitted,
    SecureReceiptDelivered,
    SecureReceiptSubmitted,
    Streams,
    new_envelope,
)
from events.envelope import parse_envelope, stable_event_id
from events.identifiers import safe_token
from events.parties import OPERATOR
from marketplace.adapters.database import Database
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import CaseRow, MatchRow
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.seen_messages import DatabaseSeenMessages
from marketplace.lifecycle.swedish_time import swedish_date
from marketplace.services.directory import AddressBookFile, ensure_keys, key_directory, with_unit
from marketplace.services.lifecycle import load_case
from matchers.reference import regions
from notifiers.address_book import AddressBook, OrganisationEntry
from notifiers.envelope import OpenedMessage, compose, open_message
from notifiers.identifiers import luhn_valid
from notifiers.keystore import KeyStore
from notifiers.message_types import (
    CarePerformedReport,
    FollowUp,
    Invoice,
    InvoiceLine,
    MessageBody,
    Referral,
    ReferralAnswer,
    build_referral,
)
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

log = structlog.get_logger(__name__)

PROCEDURES = {"cataract": "CJE20", "inguinal-hernia": "JAB30", "knee-replacement": "NGB49"}
CLINICAL_SUMMARY = "Remiss för åtgärd enligt vårdgarantin. Anamnes och status bifogas (syntetiska uppgifter)."
_GIVEN = ("Alvina", "Edvira", "Majken", "Nilsine", "Ottilde", "Sunniva", "Gretel", "Ingvalda", "Arvedine", "Tyra")
_FAMILY_HEAD = ("Kvarn", "Ljung", "Sälg", "Rönn", "Tjärn", "Myr", "Hägg", "Lönn")
_FAMILY_TAIL = ("ekvist", "grenius", "hammarén", "dahlius", "strömer", "bladin", "markell", "byström")


def _invoice_id(match_id: str) -> str:
    # Ids on the bus are of the bus's alphabet (events/identifiers.py): a token of the match id.
    return f"inv-{safe_token(match_id.encode(), 10)}"


@dataclass(frozen=True)
class SyntheticIdentity:
    personal_identity_number: str
    given_name: str
    family_name: str


def synthetic_identity(case_ref: str) -> SyntheticIdentity:
    """A made-up patient for `case_ref`: always the same, never a real person's number on purpose
    (a random birth date and serial with a computed check digit; the names are invented)."""
    digest = hashlib.sha256(f"nvf-demo-patient/{case_ref}".encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    birth = date(1931, 1, 1) + timedelta(days=n % (365 * 40))
    serial = f"{(n >> 20) % 1000:03d}"
    body = f"{birth:%y%m%d}{serial}"
    check = next(str(d) for d in range(10) if luhn_valid(body + str(d)))
    return SyntheticIdentity(
        personal_identity_number=f"{birth:%Y%m%d}-{serial}{check}",
        given_name=_GIVEN[(n >> 32) % len(_GIVEN)],
        family_name=_FAMILY_HEAD[(n >> 40) % len(_FAMILY_HEAD)] + _FAMILY_TAIL[(n >> 48) % len(_FAMILY_TAIL)],
    )


@dataclass
class PartyOutcome:
    carried: list[str] = field(default_factory=list)
    """Cases taken through referral, care, follow-up, invoice and payment."""
    declined: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    referrals_opened: int = 0
    messages_received: int = 0
    receipts_returned: int = 0
    receipts_read: int = 0
    refusals: int = 0
    seconds: float = 0.0


class Federation:
    """The regions' own systems: one key store each, the shared address book, their inboxes."""

    def __init__(self, parties: PartyClients, streams: Streams, key_dir: Path, start_id: str) -> None:
        # Each region's system speaks as its own Redis user.
        self.parties = parties
        self.streams = streams
        self.key_dir = key_dir
        # The shared address book, looked at afresh whenever it changed: the marketplace lists a
        # unit when it first routes to it, and a copy read before that must not refuse the unit.
        self._book_file = AddressBookFile(key_dir, ensure_keys(key_dir))
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

    async def publish(self, stream: str, payload: Payload, *, producer: str, key: Iterable[object]) -> None:
        await self.publish_many(producer, [(stream, payload, tuple(key))])

    async def publish_many(self, producer: str, items: list[tuple[str, Payload, tuple[object, ...]]]) -> None:
        """(stream, payload, id key) entries sent as `producer`, pipelined in one round trip."""
        if not items:
            return
        async with self.parties.client(producer).pipeline(transaction=False) as pipe:
            for stream, payload, key in items:
                envelope = new_envelope(payload, producer=producer, event_id=stable_event_id("demo-party", *key))
                pipe.xadd(stream, {DATA_FIELD: envelope.to_json()})
            await pipe.execute()

    async def command(self, case_ref: str, command: str, producer: str, **args: Any) -> None:
        await self.publish(self.streams.ingress(producer),
                           CaseCommandIssued(case_ref=case_ref, command=command, args=args),
                           producer=producer, key=(case_ref, command))

    def sealed(self, body: MessageBody, *, sender_code: str, recipient: OrganisationEntry, case_ref: str,
               address: str | None = None, in_reply_to: Any = None,
               label: str = "") -> tuple[str, Payload, tuple[object, ...]]:
        """The submission of `body`, sealed by `sender_code`'s system: (stream, payload, id key)."""
        sealed = compose(body, sender=self.stores[self.codes[sender_code]], recipient=recipient,
                         recipient_address=address, conversation_id=case_ref, in_reply_to=in_reply_to, label=label)
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
    user) and handles what arrives as a batch: one transaction for its seen-message ids, and its
    receipts and answers sent in one pipelined round trip."""

    BLOCK_MS = 250  # how long a read waits before it looks at `stopping` again

    def __init__(self, federation: Federation, db: Database, outcome: PartyOutcome) -> None:
        self.f = federation
        self.db = db
        self.outcome = outcome
        self.referrals: dict[str, str] = {}  # case_ref -> referral message id, as the unit received it
        self.stopping = asyncio.Event()
        # One organisation's agent writes at a time: on SQLite concurrent writers only queue for
        # the one write lock (and time out behind the workers'); the reads and crypto stay parallel.
        self._writes = asyncio.Lock()

    async def run(self) -> None:
        # Stopped by an event, not a cancel: a cancel landing inside a database call could be
        # swallowed below it and leave a reader running for ever.
        await asyncio.gather(*(self._follow(code, org) for code, org in self.f.codes.items()))

    async def _follow(self, code: str, org: str) -> None:
        stream = self.f.streams.inbox(org)
        client = self.f.parties.client(code)
        while not self.stopping.is_set():
            try:
                found = await client.xread({stream: self.f._last[org]}, count=500, block=self.BLOCK_MS)
                for _, entries in found or ():
                    await self._handle(code, org, entries)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("demo_parties.agent_failed", org=org)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=0.5)

    async def poll(self) -> int:
        """Handle whatever every inbox holds now, without waiting (a last sweep)."""
        handled = 0
        for code, org in self.f.codes.items():
            entries = await self.f.parties.client(code).xrange(self.f.streams.inbox(org),
                                                               min=f"({self.f._last[org]}", count=500)
            if entries:
                handled += await self._handle(code, org, entries)
        return handled

    async def _handle(self, code: str, org: str, entries: list[Any]) -> int:
        store: KeyStore = self.f.stores[org]
        # The book as it is now: a unit listed a moment ago must be found (see `Federation.book`).
        book = self.f.book
        opened: list[tuple[OpenedMessage | None, MessageRejected | None]] = []
        for _, fields in entries:
            _, payload = parse_envelope(fields[DATA_FIELD.encode()])
            if isinstance(payload, SecureMessageDelivered):
                # Opened (verified, decrypted) before the transaction: the crypto holds no lock.
                try:
                    opened.append((open_message(base64.b64decode(payload.sealed), store, book), None))
                except MessageRejected as refused:
                    opened.append((None, refused))
            elif isinstance(payload, SecureReceiptDelivered):
                self._receipt(payload, book)
        if opened:
            async with self._writes, self.db.session() as session:
                ids = [m.header.message_id for m, _ in opened if m is not None]
                new = await DatabaseSeenMessages(session, org).add_new(ids)
                out: list[tuple[str, Payload, tuple[object, ...]]] = []
                for message, refusal in opened:
                    if message is not None:
                        header = message.header
                        if header.message_id in new:
                            new.discard(header.message_id)  # new once, even if delivered twice here
                        else:
                            message, refusal = None, MessageRejected(
                                ReceiptDetail.DUPLICATE, f"message {header.message_id} was already received",
                                message_id=header.message_id, sender_org=header.sender_org)
                    out += self._answer(code, org, store, book, message, refusal)
                # Sent before the seen ids commit: a crash in between sends a receipt again, which
                # the marketplace records once; the other order could lose the receipt for good.
                await self.f.publish_many(code, out)
                await session.commit()
        last = entries[-1][0]
        self.f._last[org] = last.decode() if isinstance(last, bytes) else last
        return len(entries)

    def _answer(self, code: str, org: str, store: KeyStore, book: AddressBook, message: OpenedMessage | None,
                rejection: MessageRejected | None) -> list[tuple[str, Payload, tuple[object, ...]]]:
        """The signed receipt for one message (and, for a referral, the unit's answer)."""
        if message is not None:
            receipt = new_receipt(org, message_id=message.header.message_id, recipient_org=message.header.sender_org)
        else:
            assert rejection is not None
            receipt = new_receipt(org, message_id=rejection.message_id, recipient_org=rejection.sender_org,
                                  rejection=rejection)
            log.warning("demo_parties.message_refused_by_receiver", org=org, reason=rejection.reason,
                        message_id=str(rejection.message_id) if rejection.message_id else None)
        signed = sign_receipt(receipt, store)
        self.outcome.messages_received += 1
        self.outcome.receipts_returned += 1
        out: list[tuple[str, Payload, tuple[object, ...]]] = [(
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
                                scheduled_for=swedish_date(message.header.created_at) + timedelta(days=14))
        out.append(self.f.sealed(answer, sender_code=code, recipient=home, case_ref=referral.case_ref,
                                 in_reply_to=message.header.message_id, label="Svar på remiss"))
        return out

    def _receipt(self, delivered: SecureReceiptDelivered, book: AddressBook) -> None:
        try:
            receipt = verify_receipt(base64.b64decode(delivered.receipt), book)
        except ReceiptInvalid:
            log.warning("demo_parties.receipt_invalid", message_id=delivered.message_id)
            return
        self.outcome.receipts_read += 1
        if receipt.status is ReceiptStatus.REJECTED:
            self.outcome.refusals += 1
            log.warning("demo_parties.message_refused", message_id=delivered.message_id,
                        code=receipt.code, detail=receipt.detail, reason=receipt.reason)


async def _states(db: Database, refs: Iterable[str]) -> dict[str, str]:
    async with db.session() as session:
        rows = (await session.exec(select(CaseRow.case_ref, CaseRow.state)
                                   .where(col(CaseRow.case_ref).in_(list(refs))))).all()
    return dict(rows)


class StreamEvents:
    """Wakes a waiting party when something new is on a stream (`cases`: something happened to a
    case; `messages`: a message was sent or receipted): a read that blocks on the stream, as the
    operator (who may read every stream), instead of a poll on a timer."""

    BLOCK_MS = 250

    def __init__(self, parties: PartyClients, stream: str) -> None:
        self.client = parties.client(OPERATOR)
        self.stream = stream
        self.last = "$"

    async def start(self) -> None:
        # From the newest entry on: what happened before the wait is in the database already.
        newest = await self.client.xrevrange(self.stream, count=1)
        self.last = _text_id(newest[0][0]) if newest else "0-0"

    async def next(self) -> None:
        found = await self.client.xread({self.stream: self.last}, count=1000, block=self.BLOCK_MS)
        for _, entries in found or ():
            self.last = _text_id(entries[-1][0])


def _text_id(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


async def wait_for(db: Database, expected: dict[str, set[str]], *, timeout_s: float,
                   events: StreamEvents | None = None) -> dict[str, str]:
    """Until every case is in one of its expected states; returns the states. It gives up (and goes on)
    only after `timeout_s` without progress: a busy machine is slow, not stuck, and a fixed limit
    would leave cases behind whose every later step then fails. Between looks it waits for the next
    case event (or, without `events`, 50 ms)."""
    started = time.monotonic()
    deadline = started + timeout_s
    best = -1
    while True:
        states = await _states(db, expected)
        reached = sum(1 for ref, wanted in expected.items() if states.get(ref) in wanted)
        if reached > best:
            best, deadline = reached, time.monotonic() + timeout_s
        if reached == len(expected) or time.monotonic() > deadline:
            log.debug("demo_parties.waited", cases=len(expected), seconds=round(time.monotonic() - started, 2),
                      states=sorted({s for wanted in expected.values() for s in wanted}))
            missing = {ref: states.get(ref) for ref, wanted in expected.items() if states.get(ref) not in wanted}
            if missing:
                log.warning("demo_parties.cases_behind", count=len(missing), example=next(iter(missing.items())))
            return states
        if events is not None:
            await events.next()
        else:
            await asyncio.sleep(0.05)


# The steps of the parties' play, in order, as `play_parties` reports them to `on_step`.
PLAY_STEPS = ("decline_match", "accept_match", "offer_to_patient", "record_patient_answer", "referral", "schedule",
              "record_performed", "record_follow_up", "invoice", "payment", "receipts")


async def play_parties(parties: PartyClients, db: Database, streams: Streams, state_dir: Path, *,
                       since_ms: int = 0, sample: int = 40, decline_every: int = 8, timeout_s: float = 60.0,
                       on_step: Callable[[str, int], None] | None = None) -> PartyOutcome:
    """Carry up to `sample` placed cases through the rest of the process (every `decline_every`-th
    gets a provider decline instead)."""
    started = time.perf_counter()
    outcome = PartyOutcome()
    # Inbox entries older than the run (`since_ms`) belong to an earlier one.
    federation = Federation(parties, streams, key_directory(state_dir), f"{since_ms}-0")
    agents = Agents(federation, db, outcome)
    agent_task = asyncio.create_task(agents.run(), name="demo-party-agents")
    pending: dict[str, list[tuple[str, Payload, tuple[object, ...]]]] = defaultdict(list)

    def done(step_name: str, cases: int) -> None:
        log.debug("demo_parties.step_done", step=step_name, cases=cases,
                  seconds=round(time.perf_counter() - started, 2))
        if on_step is not None:
            on_step(step_name, cases)
    case_events = StreamEvents(parties, streams.cases)
    await case_events.start()
    message_events = StreamEvents(parties, streams.messages)
    await message_events.start()

    async def send_pending() -> None:
        # Each party's entries of a step in one pipelined round trip, as its own user.
        for producer, items in list(pending.items()):
            await federation.publish_many(producer, items)
        pending.clear()

    def command(ref: str, name: str, producer: str, **args: Any) -> None:
        pending[producer].append((streams.ingress(producer), CaseCommandIssued(case_ref=ref, command=name, args=args),
                                  (ref, name)))

    def submission(body: MessageBody, *, sender_code: str, recipient: OrganisationEntry, ref: str,
                   address: str | None = None, label: str = "") -> None:
        pending[sender_code].append(federation.sealed(body, sender_code=sender_code, recipient=recipient,
                                                      case_ref=ref, address=address, label=label))

    try:
        async with db.session() as session:
            held = (await session.exec(select(CaseRow, MatchRow)
                                       .where(CaseRow.state == "match_proposed",
                                              col(CaseRow.current_match_id) == col(MatchRow.match_id))
                                       .order_by(col(CaseRow.case_ref)))).all()
        stride = max(1, len(held) // sample) if sample else len(held) + 1
        chosen = list(held)[::stride][:sample]
        matches = {case.case_ref: match for case, match in chosen}
        declined = {ref for i, ref in enumerate(matches) if decline_every and i % decline_every == decline_every - 1}
        carried = [ref for ref in matches if ref not in declined]
        outcome.declined, outcome.carried = sorted(declined), carried

        async def step(refs: Iterable[str], name: str, producer_of: str, expected: set[str],
                       **args_of: Any) -> None:
            refs = list(refs)
            for ref in refs:
                m = matches[ref]
                producer = m.providing_region if producer_of == "provider" else m.requesting_region
                args = {k: (v(ref, m) if callable(v) else v) for k, v in args_of.items()}
                command(ref, name, producer, **args)
            await send_pending()
            await wait_for(db, {ref: expected for ref in refs}, timeout_s=timeout_s, events=case_events)
            done(name, len(refs))

        today = swedish_date(datetime.now(UTC))
        await step(declined, "decline_match", "provider", {"on_book"},
                   match_id=lambda r, m: m.match_id, reason_code="no_capacity")
        await step(carried, "accept_match", "provider", {"provider_accepted"}, match_id=lambda r, m: m.match_id)
        await step(carried, "offer_to_patient", "home", {"offered_to_patient"})
        await step(carried, "record_patient_answer", "home", {"patient_accepted"},
                   match_id=lambda r, m: m.match_id, accepted=True)

        # The home region's system builds the referral only past the staged-release gate.
        async with db.session() as session:
            cases = {c.case_ref: c for c in (await session.exec(
                select(CaseRow).where(col(CaseRow.case_ref).in_(carried)))).all()}
        for ref in carried:
            m = matches[ref]
            case = cases[ref]
            who = synthetic_identity(ref)
            referral = build_referral(
                CaseStateChanged(case_ref=ref, from_state=None, to_state=case.state, version=max(case.version, 1)),
                match_id=m.match_id, care_area=m.care_area, personal_identity_number=who.personal_identity_number,
                given_name=who.given_name, family_name=who.family_name, clinical_summary=CLINICAL_SUMMARY)
            provider = with_unit(federation.book, m.unit_hsa_id, region_code=m.providing_region).by_address(
                m.unit_hsa_id)
            assert provider is not None
            submission(referral, sender_code=m.requesting_region, recipient=provider, ref=ref,
                       address=m.unit_hsa_id, label="Remiss")
        await send_pending()
        await wait_for(db, {ref: {"referral_acknowledged"} for ref in carried}, timeout_s=timeout_s,
                       events=case_events)
        done("referral", len(carried))

        await step(carried, "schedule", "provider", {"scheduled"},
                   scheduled_for=(today + timedelta(days=14)).isoformat())
        await step(carried, "record_performed", "provider", {"performed"}, performed_on=today.isoformat())
        for ref in carried:
            m = matches[ref]
            submission(
                CarePerformedReport(match_id=m.match_id, case_ref=ref, performed_on=today,
                                    procedure_codes=(PROCEDURES.get(m.care_area, "XXX00"),),
                                    summary="Åtgärd utförd utan komplikationer."),
                sender_code=m.providing_region, recipient=federation.org(m.requesting_region), ref=ref,
                label="Utförd vård")
        await send_pending()
        await step(carried, "record_follow_up", "provider", {"followed_up"})
        for ref in carried:
            m = matches[ref]
            submission(
                FollowUp(match_id=m.match_id, case_ref=ref, followed_up_on=today, outcome="as_expected"),
                sender_code=m.providing_region, recipient=federation.org(m.requesting_region), ref=ref,
                label="Uppföljning")
        await send_pending()
        await step(carried, "invoice", "provider", {"invoiced", "settled"},
                   invoice_id=lambda r, m: _invoice_id(m.match_id))
        for ref in carried:
            m = matches[ref]
            async with db.session() as session:
                state = await load_case(session, ref)
            owed = state.settlement.invoice_total_sek if state and state.settlement else Decimal(str(m.price_sek))
            submission(
                Invoice(invoice_id=_invoice_id(m.match_id), match_id=m.match_id, case_ref=ref, issued_on=today,
                        due_on=today + timedelta(days=30),
                        lines=(InvoiceLine(kind="care", description="Åtgärd till låst pris", amount_sek=owed),),
                        total_sek=owed),
                sender_code=m.providing_region, recipient=federation.org(m.requesting_region), ref=ref,
                label="Faktura")
            if state is not None and state.outstanding_sek > 0:
                command(ref, "record_payment", m.requesting_region,
                        payment_ref=f"pay-{safe_token(m.match_id.encode(), 10)}",
                        amount_sek=str(state.outstanding_sek))
        await send_pending()
        states = await wait_for(db, {ref: {"settled"} for ref in carried}, timeout_s=timeout_s, events=case_events)
        outcome.settled = sorted(ref for ref in carried if states.get(ref) == "settled")
        done("payment", len(carried))
        await _until_answered(db, list(matches), timeout_s=timeout_s, events=message_events)
        done("receipts", len(matches))
    finally:
        agents.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(agent_task), timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            agent_task.cancel()
    # A last look once the readers have stopped (not beside them: two readers of one inbox would
    # each answer the same message, the second with a duplicate refusal).
    await agents.poll()
    outcome.seconds = time.perf_counter() - started
    log.info("demo_parties.done", carried=len(outcome.carried), declined=len(outcome.declined),
             settled=len(outcome.settled), referrals_opened=outcome.referrals_opened,
             messages_received=outcome.messages_received, receipts_returned=outcome.receipts_returned,
             refusals=outcome.refusals, seconds=round(outcome.seconds, 2))
    return outcome


async def _until_answered(db: Database, refs: list[str], *, timeout_s: float, events: StreamEvents) -> None:
    """Until every message of these cases has its receipt (so their timelines are complete); gives up
    after `timeout_s` without a new receipt."""
    deadline = time.monotonic() + timeout_s
    fewest: int | None = None
    while time.monotonic() < deadline:
        async with db.session() as session:
            open_ = (await session.exec(select(SecureMessageRow.message_id).where(
                col(SecureMessageRow.case_ref).in_(refs), col(SecureMessageRow.receipt_status).is_(None)))).all()
        if not open_:
            return
        if fewest is None or len(open_) < fewest:
            fewest, deadline = len(open_), time.monotonic() + timeout_s
        await events.next()
    log.warning("demo_parties.receipts_missing", cases=len(refs))
