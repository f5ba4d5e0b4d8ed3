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
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
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
from demo_regions.clock import SimulatedClock, working_morning
from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date
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
    """Cases whose provider declined the match."""
    expired: list[str] = field(default_factory=list)
    """Cases whose provider never answered: the hold lapsed at its deadline."""
    patient_declined: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    """Carried cases whose care came after their guarantee date (the sweeper warned on each)."""
    plans: dict[str, CasePlan] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    """How many cases reached the state each step of the play aims at."""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    """The (simulated) moments the play began and ended."""
    referrals_opened: int = 0
    messages_received: int = 0
    receipts_returned: int = 0
    receipts_read: int = 0
    refusals: int = 0
    seconds: float = 0.0


class Federation:
    """The regions' own systems: one key store each, the shared address book, their inboxes."""

    def __init__(self, parties: PartyClients, streams: Streams, key_dir: Path, start_id: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # The systems' own clock: what they write and sign is dated by it (the demo's is simulated).
        self.clock = clock
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
    user) and handles what arrives as a batch: one transaction for its seen-message ids, and its
    receipts and answers sent in one pipelined round trip."""

    BLOCK_MS = 250  # how long a read waits before it looks at `stopping` again

    def __init__(self, federation: Federation, db: Database, outcome: PartyOutcome) -> None:
        self.f = federation
        self.db = db
        self.outcome = outcome
        self.referrals: dict[str, str] = {}  # case_ref -> referral message id, as the unit received it
        self.scheduled_for: dict[str, date] = {}  # case_ref -> the day the unit offers in its answer
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
            receipt = new_receipt(org, message_id=message.header.message_id, recipient_org=message.header.sender_org,
                                  now=self.f.clock())
        else:
            assert rejection is not None
            receipt = new_receipt(org, message_id=rejection.message_id, recipient_org=rejection.sender_org,
                                  rejection=rejection, now=self.f.clock())
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
                                scheduled_for=self.scheduled_for.get(
                                    referral.case_ref, swedish_date(message.header.created_at) + timedelta(days=14)))
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
PLAY_STEPS = ("decline_match", "hold_expired", "accept_match", "offer_to_patient", "record_patient_answer",
              "referral", "schedule", "record_performed", "record_follow_up", "invoice", "payment", "receipts")

# What each case of the sample does (see `fates`).
CARRIED, PROVIDER_DECLINES, HOLD_EXPIRES, PATIENT_DECLINES = "carried", "provider_declines", "hold_expires", \
    "patient_declines"


@dataclass(frozen=True)
class Action:
    """One party's action on one case at a simulated moment."""

    at: datetime
    case_ref: str
    step: str


@dataclass(frozen=True)
class CasePlan:
    """A case's part in the play: its fate and the moments of its actions (deterministic per case)."""

    case_ref: str
    fate: str
    actions: tuple[Action, ...]
    scheduled_for: date | None = None


def _rng(case_ref: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"nvf-demo-play/{case_ref}".encode()).digest()[:8], "big"))


def _weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _office_hours(moment: datetime, rng: random.Random) -> datetime:
    """`moment`, or if it falls outside office hours (8-17 Swedish time, Monday to Friday) a moment
    in the first hours of the next working morning: people act at work."""
    local = moment.astimezone(SWEDISH_TIME)
    if local.weekday() < 5 and 8 <= local.hour < 17:
        return moment
    day = local.date() if local.hour < 8 else local.date() + timedelta(days=1)
    return working_morning(day) + timedelta(minutes=rng.randint(0, 150))


def plan_case(case_ref: str, fate: str, matched_at: datetime, hold_expires_at: datetime | None,
              patient_window: timedelta = timedelta(days=5)) -> CasePlan:
    """When each party of `case_ref` acts, from its match on, in office hours: the provider answers
    within hours to two days (or, `HOLD_EXPIRES`, never: the hold lapses a minute after its
    deadline), the home region offers the slot the same day, the patient answers in 1 to 4.5 days
    (inside the patient's hold), the referral goes the next working day, the provider books care 2
    to 6 weeks out and performs it on that day, follows up about two weeks later, invoices within a
    week of the follow-up, and the home region pays 5 to 30 days after the invoice."""
    rng = _rng(case_ref)
    lapse = hold_expires_at or matched_at + timedelta(hours=48)
    actions: list[Action] = []

    def act(at: datetime, step: str, *, latest: datetime | None = None) -> datetime:
        at = _office_hours(at, rng)
        if latest is not None:
            at = min(at, latest)  # inside the hold, whatever office hours say
        if actions:
            at = max(at, actions[-1].at + timedelta(minutes=1))  # a case's actions in their order
        actions.append(Action(at, case_ref, step))
        return at

    if fate == HOLD_EXPIRES:
        return CasePlan(case_ref, fate, (Action(lapse + timedelta(minutes=1), case_ref, "hold_expired"),))
    answered = act(matched_at + timedelta(hours=rng.uniform(2, 44)),
                   "decline_match" if fate == PROVIDER_DECLINES else "accept_match",
                   latest=lapse - timedelta(minutes=30))
    if fate == PROVIDER_DECLINES:
        return CasePlan(case_ref, fate, tuple(actions))
    patient_lapse = answered + patient_window
    offered = act(answered + timedelta(hours=rng.uniform(0.5, 5)), "offer_to_patient",
                  latest=patient_lapse - timedelta(hours=2))
    answer = act(offered + timedelta(days=rng.uniform(1, 4.5)), "record_patient_answer",
                 latest=patient_lapse - timedelta(minutes=30))
    if fate == PATIENT_DECLINES:
        return CasePlan(case_ref, fate, tuple(actions))
    referred = act(working_morning(swedish_date(answer) + timedelta(days=1))
                   + timedelta(minutes=rng.randint(0, 480)), "referral")
    act(referred + timedelta(hours=rng.uniform(2, 30)), "schedule")
    scheduled_for = _weekday(swedish_date(referred) + timedelta(days=rng.randint(14, 42)))
    act(working_morning(scheduled_for, dtime(14, 0)) + timedelta(minutes=rng.randint(0, 150)), "record_performed")
    followed_up = act(working_morning(scheduled_for + timedelta(days=rng.randint(12, 16)))
                      + timedelta(minutes=rng.randint(0, 480)), "record_follow_up")
    invoiced = act(followed_up + timedelta(days=rng.uniform(1, 7)), "invoice")
    act(invoiced + timedelta(days=rng.uniform(5, 30)), "payment")
    return CasePlan(case_ref, fate, tuple(actions), scheduled_for)


def fates(refs: list[str], *, decline_every: int = 8, expire_every: int = 10,
          patient_declines_every: int = 10) -> dict[str, str]:
    """Every `decline_every`-th case gets a provider decline; of the others, every `expire_every`-th
    (from the fifth) a provider that never answers, and every `patient_declines_every`-th (from the
    ninth) a patient who says no; the rest are carried to payment."""
    out = {}
    for i, ref in enumerate(refs):
        if decline_every and i % decline_every == decline_every - 1:
            out[ref] = PROVIDER_DECLINES
        elif expire_every and i % expire_every == min(4, expire_every - 1):
            out[ref] = HOLD_EXPIRES
        elif patient_declines_every and i % patient_declines_every == min(8, patient_declines_every - 1):
            out[ref] = PATIENT_DECLINES
        else:
            out[ref] = CARRIED
    return out


def sweeper_morning(day: date) -> datetime:
    """06:00 Swedish time on `day`, weekend or not: when the demo's sweeper looks."""
    return datetime.combine(day, dtime(6, 0), tzinfo=SWEDISH_TIME)


class Deadlines:
    """What the play needs of the marketplace's deadline sweeper, for a clock the play moves itself:
    `sweep()` stages what is due now (expired holds, guarantee warnings) and returns how many;
    `settle()` waits until the marketplace has taken in what was staged."""

    async def sweep(self) -> int:
        return 0

    async def settle(self) -> None:
        return None


async def play_parties(parties: PartyClients, db: Database, streams: Streams, state_dir: Path, *,
                       since_ms: int = 0, sample: int = 40, decline_every: int = 8, expire_every: int = 10,
                       patient_declines_every: int = 10, timeout_s: float = 60.0,
                       on_step: Callable[[str, int], None] | None = None,
                       clock: SimulatedClock | None = None, deadlines: Deadlines | None = None) -> PartyOutcome:
    """Carry up to `sample` held cases through the rest of the process, each on its own schedule
    (`plan_case`), in the order of the simulated moments of their actions.

    With `clock` (the marketplace's clock) the play moves it to each action's moment before taking
    it, and after every move asks `deadlines` to sweep: holds lapse, guarantee warnings are raised
    as the simulated days pass. Without one the play runs on the wall clock (actions at once)."""
    started = time.perf_counter()
    outcome = PartyOutcome()
    deadlines = deadlines or Deadlines()
    now: Callable[[], datetime] = clock if clock is not None else (lambda: datetime.now(UTC))
    # Inbox entries older than the run (`since_ms`) belong to an earlier one.
    federation = Federation(parties, streams, key_directory(state_dir), f"{since_ms}-0", clock=now)
    agents = Agents(federation, db, outcome)
    agent_task = asyncio.create_task(agents.run(), name="demo-party-agents")
    pending: dict[str, list[tuple[str, Payload, tuple[object, ...]]]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    submitted: list[str] = []  # ids of the messages the parties sent, until each has its receipt

    case_events = StreamEvents(parties, streams.cases)
    await case_events.start()
    message_events = StreamEvents(parties, streams.messages)
    await message_events.start()

    async def send_pending() -> None:
        # Each party's entries of an action in one pipelined round trip, as its own user.
        for producer, items in list(pending.items()):
            await federation.publish_many(producer, items)
        pending.clear()

    def command(ref: str, name: str, producer: str, **args: Any) -> None:
        pending[producer].append((streams.ingress(producer), CaseCommandIssued(case_ref=ref, command=name, args=args),
                                  (ref, name)))

    def submission(body: MessageBody, *, sender_code: str, recipient: OrganisationEntry, ref: str,
                   address: str | None = None, label: str = "") -> None:
        item = federation.sealed(body, sender_code=sender_code, recipient=recipient, case_ref=ref, address=address,
                                 label=label)
        pending[sender_code].append(item)
        submitted.append(str(item[2][2]))

    async def sweep() -> None:
        # A sweep stages at most a batch (1000); what is due beyond it, the next one takes.
        for _ in range(100):
            if not await deadlines.sweep():
                return
            await deadlines.settle()

    try:
        async with db.session() as session:
            held = (await session.exec(select(CaseRow, MatchRow)
                                       .where(CaseRow.state == "match_proposed",
                                              col(CaseRow.current_match_id) == col(MatchRow.match_id))
                                       .order_by(col(CaseRow.case_ref)))).all()
        stride = max(1, len(held) // sample) if sample else len(held) + 1
        chosen = list(held)[::stride][:sample]
        matches = {case.case_ref: match for case, match in chosen}
        fate = fates(list(matches), decline_every=decline_every, expire_every=expire_every,
                     patient_declines_every=patient_declines_every)
        plans: dict[str, CasePlan] = {}
        async with db.session() as session:
            for ref in matches:
                state = await load_case(session, ref)
                matched_at = state.matched_at if state and state.matched_at else now()
                plans[ref] = plan_case(ref, fate[ref], matched_at, state.hold_expires_at if state else None)
        agents.scheduled_for = {ref: p.scheduled_for for ref, p in plans.items() if p.scheduled_for}
        outcome.plans = plans
        outcome.declined = sorted(r for r, f in fate.items() if f == PROVIDER_DECLINES)
        outcome.expired = sorted(r for r, f in fate.items() if f == HOLD_EXPIRES)
        outcome.patient_declined = sorted(r for r, f in fate.items() if f == PATIENT_DECLINES)
        outcome.carried = [r for r, f in fate.items() if f == CARRIED]
        outcome.started_at = now()
        # What was due at the clearing already (a case past its guarantee before it was matched).
        await sweep()

        agenda = sorted((a for p in plans.values() for a in p.actions), key=lambda a: (a.at, a.case_ref))
        for action in agenda:
            ref, m = action.case_ref, matches[action.case_ref]
            while clock is not None and action.at > clock():
                # Every message sent so far has its receipt before time jumps on (else the courier
                # would count the jump as a receipt overdue); then the clock moves, a day at most:
                # the sweeper looks each simulated morning at 06:00, so a warning is dated its own day.
                # (Not at midnight: on SQLite a guarantee deadline is stored as Swedish wall time read
                # as UTC, so it falls due an hour or two late.)
                await _until_receipted(db, submitted, timeout_s=timeout_s, events=message_events)
                submitted.clear()
                await _until_answered(db, None, timeout_s=timeout_s, events=message_events)
                local = clock().astimezone(SWEDISH_TIME)
                morning = sweeper_morning(local.date() + timedelta(days=0 if local.hour < 6 else 1))
                clock.advance_to(min(action.at, morning))
                await sweep()
            expected = await _act(action, m, plans[ref], federation, agents, db, command, submission)
            await send_pending()
            if expected:
                states = await wait_for(db, {ref: expected}, timeout_s=timeout_s, events=case_events)
                if states.get(ref) in expected:
                    counts[action.step] += 1
                    if action.step == "invoice":
                        await _send_invoice(ref, m, swedish_date(action.at), federation, db, submission)
                        await send_pending()
                    if action.step == "payment":
                        outcome.settled.append(ref)
            if on_step is not None:
                on_step(action.step, counts[action.step])
        outcome.settled.sort()
        outcome.ended_at = now()
        async with db.session() as session:
            for ref in outcome.carried:
                state = await load_case(session, ref)
                if state is not None and state.performed_on is not None and state.performed_on > state.guarantee_date:
                    outcome.late.append(ref)
        await _until_answered(db, list(matches), timeout_s=timeout_s, events=message_events)
        if on_step is not None:
            on_step("receipts", len(matches))
    finally:
        agents.stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(agent_task), timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            agent_task.cancel()
    # A last look once the readers have stopped (not beside them: two readers of one inbox would
    # each answer the same message, the second with a duplicate refusal).
    await agents.poll()
    outcome.steps = dict(counts)
    outcome.seconds = time.perf_counter() - started
    log.info("demo_parties.done", carried=len(outcome.carried), declined=len(outcome.declined),
             expired=len(outcome.expired), patient_declined=len(outcome.patient_declined),
             settled=len(outcome.settled), referrals_opened=outcome.referrals_opened,
             messages_received=outcome.messages_received, receipts_returned=outcome.receipts_returned,
             refusals=outcome.refusals, seconds=round(outcome.seconds, 2))
    return outcome


async def _send_invoice(ref: str, m: MatchRow, issued_on: date, federation: Federation, db: Database,
                        submission: Callable[..., None]) -> None:
    """The invoice as the provider's system sends it, for what the marketplace settled on."""
    async with db.session() as session:
        state = await load_case(session, ref)
    owed = state.settlement.invoice_total_sek if state and state.settlement else Decimal(str(m.price_sek))
    submission(Invoice(invoice_id=_invoice_id(m.match_id), match_id=m.match_id, case_ref=ref, issued_on=issued_on,
                       due_on=issued_on + timedelta(days=30),
                       lines=(InvoiceLine(kind="care", description="Åtgärd till låst pris", amount_sek=owed),),
                       total_sek=owed),
               sender_code=m.providing_region, recipient=federation.org(m.requesting_region), ref=ref,
               label="Faktura")


async def _act(action: Action, m: MatchRow, plan: CasePlan, federation: Federation, agents: Agents, db: Database,
               command: Callable[..., None], submission: Callable[..., None]) -> set[str]:
    """Stage one action's commands and messages; returns the states the case may then be in."""
    ref, step, provider, home = action.case_ref, action.step, m.providing_region, m.requesting_region
    today = swedish_date(action.at)
    if step == "decline_match":
        command(ref, step, provider, match_id=m.match_id, reason_code="no_capacity")
        return {"on_book"}
    if step == "hold_expired":
        return {"on_book"}  # the sweeper lapsed it (the provider never answered)
    if step == "accept_match":
        command(ref, step, provider, match_id=m.match_id)
        return {"provider_accepted"}
    if step == "offer_to_patient":
        command(ref, step, home)
        return {"offered_to_patient"}
    if step == "record_patient_answer":
        if plan.fate == PATIENT_DECLINES:
            command(ref, step, home, match_id=m.match_id, accepted=False, reason_code="date_unsuitable")
            return {"on_book"}
        command(ref, step, home, match_id=m.match_id, accepted=True)
        return {"patient_accepted"}
    if step == "referral":
        # The home region's system builds the referral only past the staged-release gate.
        async with db.session() as session:
            case = await session.get(CaseRow, ref)
        assert case is not None
        who = synthetic_identity(ref)
        referral = build_referral(
            CaseStateChanged(case_ref=ref, from_state=None, to_state=case.state, version=max(case.version, 1)),
            match_id=m.match_id, care_area=m.care_area, personal_identity_number=who.personal_identity_number,
            given_name=who.given_name, family_name=who.family_name, clinical_summary=CLINICAL_SUMMARY)
        unit = with_unit(federation.book, m.unit_hsa_id, region_code=provider).by_address(m.unit_hsa_id)
        assert unit is not None
        submission(referral, sender_code=home, recipient=unit, ref=ref, address=m.unit_hsa_id, label="Remiss")
        return {"referral_acknowledged"}
    if step == "schedule":
        assert plan.scheduled_for is not None
        command(ref, step, provider, scheduled_for=plan.scheduled_for.isoformat())
        return {"scheduled"}
    if step == "record_performed":
        assert plan.scheduled_for is not None
        command(ref, step, provider, performed_on=plan.scheduled_for.isoformat())
        submission(CarePerformedReport(match_id=m.match_id, case_ref=ref, performed_on=plan.scheduled_for,
                                       procedure_codes=(PROCEDURES.get(m.care_area, "XXX00"),),
                                       summary="Åtgärd utförd utan komplikationer."),
                   sender_code=provider, recipient=federation.org(home), ref=ref, label="Utförd vård")
        return {"performed"}
    if step == "record_follow_up":
        command(ref, step, provider)
        submission(FollowUp(match_id=m.match_id, case_ref=ref, followed_up_on=today, outcome="as_expected"),
                   sender_code=provider, recipient=federation.org(home), ref=ref, label="Uppföljning")
        return {"followed_up"}
    if step == "invoice":
        command(ref, step, provider, invoice_id=_invoice_id(m.match_id))
        return {"invoiced", "settled"}
    if step == "payment":
        async with db.session() as session:
            state = await load_case(session, ref)
        if state is not None and state.outstanding_sek > 0:
            command(ref, "record_payment", home, payment_ref=f"pay-{safe_token(m.match_id.encode(), 10)}",
                    amount_sek=str(state.outstanding_sek))
        return {"settled"}
    raise ValueError(f"no such step of the play: {step}")


async def _until_receipted(db: Database, message_ids: list[str], *, timeout_s: float,
                           events: StreamEvents) -> None:
    """Until the marketplace has recorded every one of these messages and its receipt (a message it
    has not taken in yet would be handed over, and its receipt awaited, at a later simulated time);
    gives up after `timeout_s` without progress."""
    deadline = time.monotonic() + timeout_s
    best = -1
    while message_ids and time.monotonic() < deadline:
        async with db.session() as session:
            done = len((await session.exec(select(SecureMessageRow.message_id).where(
                col(SecureMessageRow.message_id).in_(message_ids),
                col(SecureMessageRow.receipt_status).is_not(None)))).all())
        if done == len(message_ids):
            return
        if done > best:
            best, deadline = done, time.monotonic() + timeout_s
        await events.next()
    if message_ids:
        log.warning("demo_parties.receipts_missing", messages=len(message_ids))


async def _until_answered(db: Database, refs: list[str] | None, *, timeout_s: float,
                          events: StreamEvents) -> None:
    """Until every message handed over for these cases (None: for any case) has its receipt (so their
    timelines are complete); gives up after `timeout_s` without a new receipt."""
    deadline = time.monotonic() + timeout_s
    fewest: int | None = None
    while time.monotonic() < deadline:
        async with db.session() as session:
            query = select(SecureMessageRow.message_id).where(col(SecureMessageRow.receipt_status).is_(None))
            query = query.where(col(SecureMessageRow.status) == "handed_over") if refs is None else \
                query.where(col(SecureMessageRow.case_ref).in_(refs))
            open_ = (await session.exec(query)).all()
        if not open_:
            return
        if fewest is None or len(open_) < fewest:
            fewest, deadline = len(open_), time.monotonic() + timeout_s
        await events.next()
    log.warning("demo_parties.receipts_missing", cases=len(refs) if refs is not None else None)
