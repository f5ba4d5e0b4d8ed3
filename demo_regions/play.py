"""The regions' own systems, played for the demo once the clearing round has settled.

For a sample of the placed cases the parties do what the process asks of them, each only through
the bus, as an outside system would: the providing region accepts (a few decline), the home
region offers the slot to the patient and records the answer, composes the referral with the
patient's identity and a clinical summary, sealed for the providing organisation, and submits it;
the unit's agent takes it from its organisation's inbox with its own key store and returns a
signed receipt and its answer; the provider schedules, performs, follows up and invoices (with
the secure messages that go with each step), and the home region pays. Every organisation's agent
also answers every other message in its inbox (the match notices) with a receipt.

What the parties know of their cases they read from their own feeds (`feed`): the cases held for
them, each case's state, match and what is left to pay. The one thing they ask of the marketplace
beyond the bus is the demo's own: before the simulated clock moves on, `Deadlines.settle` waits
until the marketplace has taken in what was sent (the demo hosts both sides in one process).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from demo_regions.bus import Connections, Outgoing
from demo_regions.clock import SimulatedClock
from demo_regions.feed import CaseFeeds, CaseView
from demo_regions.identity import CLINICAL_SUMMARY, synthetic_identity
from demo_regions.outcome import PartyOutcome
from demo_regions.plans import (
    CARRIED,
    HOLD_EXPIRES,
    PATIENT_DECLINES,
    PROVIDER_DECLINES,
    Action,
    CasePlan,
    fates,
    plan_case,
    sweeper_morning,
)
from demo_regions.systems import Agents, Federation
from events import CaseCommandIssued, CaseStateChanged, Streams
from events.identifiers import safe_token
from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date
from notifiers.message_types import (
    CarePerformedReport,
    FollowUp,
    Invoice,
    InvoiceLine,
    MessageBody,
    build_referral,
)
from notifiers.units import with_unit

log = structlog.get_logger(__name__)

PROCEDURES = {"cataract": "CJE20", "inguinal-hernia": "JAB30", "knee-replacement": "NGB49"}


def _invoice_id(match_id: str) -> str:
    # Ids on the bus are of the bus's alphabet (events/identifiers.py): a token of the match id.
    return f"inv-{safe_token(match_id.encode(), 10)}"


class Deadlines:
    """What the play needs of the marketplace's side of the demo, for a clock the play moves itself:
    `sweep()` stages what is due now (expired holds, guarantee warnings) and returns how many;
    `settle()` waits until the marketplace has taken in everything sent to it so far."""

    async def sweep(self) -> int:
        return 0

    async def settle(self) -> None:
        return None


async def play_parties(parties: Connections, streams: Streams, key_dir: Path, *,
                       since_ms: int = 0, sample: int = 40, decline_every: int = 8, expire_every: int = 10,
                       patient_declines_every: int = 10, timeout_s: float = 60.0,
                       on_step: Callable[[str, int], None] | None = None,
                       clock: SimulatedClock | None = None, deadlines: Deadlines | None = None) -> PartyOutcome:
    """Carry up to `sample` held cases through the rest of the process, each on its own schedule
    (`plan_case`), in the order of the simulated moments of their actions.

    With `clock` (the marketplace's clock) the play moves it to each action's moment before taking
    it, through every morning at 06:00 between, and asks `deadlines` to sweep each morning (and at
    the moment a played hold lapses): holds lapse, guarantee warnings are raised as the simulated
    days pass. Without one the play runs on the wall clock (actions at once)."""
    started = time.perf_counter()
    outcome = PartyOutcome()
    deadlines = deadlines or Deadlines()
    now: Callable[[], datetime] = clock if clock is not None else (lambda: datetime.now(UTC))
    # Inbox and feed entries older than the run (`since_ms`) belong to an earlier one.
    federation = Federation(parties, streams, key_dir, f"{since_ms}-0", clock=now)
    agents = Agents(federation, outcome)
    agent_task = asyncio.create_task(agents.run(), name="demo-party-agents")
    feeds = CaseFeeds(parties, streams, federation.codes, f"{since_ms}-0")
    pending: dict[str, list[Outgoing]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    submitted: list[str] = []  # ids of the messages the parties sent, until each has its receipt
    waited: dict[str, float] = defaultdict(float)  # seconds spent waiting, by what on (for the log)

    async def send_pending() -> None:
        # Each party's entries of an action in one pipelined round trip, as its own user.
        for producer, items in list(pending.items()):
            await federation.publish_many(producer, items)
        pending.clear()

    def command(ref: str, name: str, producer: str, **args: Any) -> None:
        pending[producer].append((streams.ingress(producer), CaseCommandIssued(case_ref=ref, command=name, args=args),
                                  (ref, name)))

    def submission(body: MessageBody, *, sender_code: str, recipient: Any, ref: str,
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

    async def answered() -> None:
        """Until every message sent so far is answered and its receipt taken in. Between regions a
        receipt comes back to the sender's inbox; of the marketplace's own messages only its side can
        tell, so it is asked to settle only when the agents answered one of those."""
        for _ in range(100):
            if not await agents.caught_up(timeout_s=timeout_s):
                log.warning("demo_regions.agents_behind")
            if not await agents.until_receipted([*submitted, *agents.unreceipted()], timeout_s=timeout_s):
                submitted.clear()
                return
            if not await agents.caught_up(timeout_s=timeout_s):
                log.warning("demo_regions.agents_behind")
            if agents.unsettled:
                agents.unsettled = 0
                await deadlines.settle()
                continue
            if not agents.unreceipted():
                submitted.clear()
                return

    try:
        await feeds.start()
        held = sorted(ref for ref, case in feeds.cases.items() if case.state == "match_proposed")
        stride = max(1, len(held) // sample) if sample else len(held) + 1
        chosen = held[::stride][:sample]
        feeds.follow_only(chosen)
        views = {ref: feeds.view(ref) for ref in chosen}
        fate = fates(chosen, decline_every=decline_every, expire_every=expire_every,
                     patient_declines_every=patient_declines_every)
        plans: dict[str, CasePlan] = {
            ref: plan_case(ref, fate[ref], view.moment("matched_at") or now(), view.moment("hold_expires_at"))
            for ref, view in views.items()}
        # The match each case was held on (the feed tells the newest; the play follows this one).
        matches = {ref: _Match.of(view) for ref, view in views.items()}
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
                # The clock moves a day at most: the sweeper looks each simulated morning at 06:00, so
                # a warning is dated its own day. (Not at midnight: on SQLite a guarantee deadline is
                # stored as Swedish wall time read as UTC, so it falls due an hour or two late.)
                local = clock().astimezone(SWEDISH_TIME)
                morning = sweeper_morning(local.date() + timedelta(days=0 if local.hour < 6 else 1))
                target = min(action.at, morning)
                if target == morning:
                    # Every message sent so far has its receipt before a new morning: a receipt is due
                    # 24 hours after its message was handed over, and mornings are 24 hours apart, so
                    # nothing the play sent can be counted overdue by the jump.
                    mark = time.perf_counter()
                    await answered()
                    waited["receipts"] += time.perf_counter() - mark
                mark = time.perf_counter()
                clock.advance_to(target)
                if target == morning or action.step == "hold_expired":
                    # Mornings, and the moment a played hold lapses (the play waits for it): between
                    # them what falls due waits for the next morning's look, as it would for a
                    # sweeper that looks once a day.
                    await sweep()
                waited["sweeps"] += time.perf_counter() - mark
            expected = _act(action, m, plans[ref], feeds.view(ref), federation, command, submission)
            await send_pending()
            if expected:
                mark = time.perf_counter()
                states = await feeds.wait_for({ref: expected}, timeout_s=timeout_s)
                waited["cases"] += time.perf_counter() - mark
                if states.get(ref) in expected:
                    counts[action.step] += 1
                    if action.step == "invoice":
                        _send_invoice(ref, m, feeds.view(ref), swedish_date(action.at), federation, submission)
                        await send_pending()
                    if action.step == "payment":
                        outcome.settled.append(ref)
            if on_step is not None:
                on_step(action.step, counts[action.step])
        outcome.settled.sort()
        outcome.ended_at = now()
        for ref in outcome.carried:
            view = feeds.view(ref)
            performed_on, guarantee = view.day("performed_on"), view.day("guarantee_date")
            if performed_on is not None and guarantee is not None and performed_on > guarantee:
                outcome.late.append(ref)
        await answered()
        if on_step is not None:
            on_step("receipts", len(matches))
    finally:
        agents.stopping.set()
        await feeds.stop()
        try:
            await asyncio.wait_for(asyncio.shield(agent_task), timeout=10)
        except (TimeoutError, asyncio.CancelledError):
            agent_task.cancel()
    # A last look once the readers have stopped (not beside them: two readers of one inbox would
    # each answer the same message, the second with a duplicate refusal).
    await agents.poll()
    outcome.steps = dict(counts)
    outcome.seconds = time.perf_counter() - started
    log.info("demo_regions.done", carried=len(outcome.carried), declined=len(outcome.declined),
             expired=len(outcome.expired), patient_declined=len(outcome.patient_declined),
             settled=len(outcome.settled), referrals_opened=outcome.referrals_opened,
             messages_received=outcome.messages_received, receipts_returned=outcome.receipts_returned,
             refusals=outcome.refusals, seconds=round(outcome.seconds, 2),
             waited={what: round(seconds, 2) for what, seconds in waited.items()})
    return outcome


class _Match:
    """The match a case was held on, as its feed told it."""

    def __init__(self, match_id: str, providing_region: str, requesting_region: str, care_area: str,
                 unit_hsa_id: str, price_sek: Decimal) -> None:
        self.match_id, self.providing_region, self.requesting_region = match_id, providing_region, requesting_region
        self.care_area, self.unit_hsa_id, self.price_sek = care_area, unit_hsa_id, price_sek

    @classmethod
    def of(cls, view: CaseView) -> _Match:
        return cls(view.text("match_id"), view.text("providing_region"), view.text("home_region"),
                   view.text("care_area"), view.text("unit_hsa_id"), view.amount("price_sek") or Decimal(0))


def _send_invoice(ref: str, m: _Match, view: CaseView, issued_on: date, federation: Federation,
                  submission: Callable[..., None]) -> None:
    """The invoice as the provider's system sends it, for what the marketplace settled on."""
    owed = view.amount("invoice_total_sek") or m.price_sek
    submission(Invoice(invoice_id=_invoice_id(m.match_id), match_id=m.match_id, case_ref=ref, issued_on=issued_on,
                       due_on=issued_on + timedelta(days=30),
                       lines=(InvoiceLine(kind="care", description="Åtgärd till låst pris", amount_sek=owed),),
                       total_sek=owed),
               sender_code=m.providing_region, recipient=federation.org(m.requesting_region), ref=ref,
               label="Faktura")


def _act(action: Action, m: _Match, plan: CasePlan, view: CaseView, federation: Federation,
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
        who = synthetic_identity(ref)
        referral = build_referral(
            CaseStateChanged(case_ref=ref, from_state=None, to_state=view.state, version=max(view.version, 1)),
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
        outstanding = view.amount("outstanding_sek")
        if outstanding is not None and outstanding > 0:
            command(ref, "record_payment", home, payment_ref=f"pay-{safe_token(m.match_id.encode(), 10)}",
                    amount_sek=str(outstanding))
        return {"settled"}
    raise ValueError(f"no such step of the play: {step}")
