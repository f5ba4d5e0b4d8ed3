"""Replay a stream on a simulated clock through the marketplace's own domain code.

Nothing of the market's rules is copied here: every case is a `marketplace.lifecycle` case
(`decide` and `evolve`: holds, answers, releases, referral, care, expiry and the care-guarantee
warnings, with the deadlines of `due_deadlines` fired by a simulated sweeper), and every round is
a `matchers` round on the open book (`matchers.incremental.OpenBook`, which is the whole book's
optimum however little of it a continuous round reads). The replay only decides *when* things
happen: arrivals at their time, the parties' answers after their delays, a deadline at its due
time, and a clearing round as the policy says.

Same stream, same policy, same seed: the same events in the same order, the same result.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from marketplace.lifecycle import (
    DEFAULT_POLICY,
    AcceptMatch,
    AcknowledgeReferral,
    CaseState,
    CaseStatus,
    Command,
    DeclineMatch,
    DomainError,
    GuaranteeWarningRaised,
    HoldReleased,
    IdentifyNeed,
    LifecyclePolicy,
    OfferToPatient,
    PatientAcceptedOffer,
    PatientDeclineReason,
    PlaceOnBook,
    ProposeMatch,
    ProviderAcceptedMatch,
    ProviderDeclineReason,
    RecordPatientAnswer,
    RecordPerformed,
    ReferralAcknowledged,
    Schedule,
    SendReferral,
    Withdraw,
    WithdrawalReason,
    apply,
    decide,
    due_deadlines,
    next_deadline,
)
from marketplace.lifecycle.events import CaseEvent, MatchHeld
from marketplace.lifecycle.swedish_time import swedish_date
from marketplace.replay.parties import reply
from marketplace.replay.policies import ClearingPolicy
from marketplace.replay.stream import (
    CaseWithdrawal,
    OfferArrival,
    OfferWithdrawal,
    RecordedRound,
    RequestArrival,
    Stream,
    StreamEvent,
    after,
    day_start,
)
from matchers.allocation import Placement
from matchers.geo import ancillary_split
from matchers.incremental import OpenBook
from matchers.model import Offer, Patient, Request
from matchers.objective import CONTRACT, Objective
from matchers.reference import default_tariff

# What happens at one moment, in this order: the world changes, parties answer, deadlines fall
# due, then the market clears what changed.
ARRIVAL, ANSWER, DEADLINE, ROUND = 0, 1, 2, 3
ProgressFn = Callable[[int, int], None]


@dataclass
class CaseRecord:
    """One patient's way through the replay: the case as the lifecycle has it, and the moments
    the report needs."""

    state: CaseState
    request: Request  # the request's terms, without patients
    patient: Patient
    published_at: datetime
    placed_at: datetime | None = None  # the proposal the patient accepted
    breach_warned: bool = False
    withdrawn_on: date | None = None
    proposed: list[str] = field(default_factory=list)  # offer ids, in the order proposed
    history: list[CaseEvent] | None = None  # every event, when the replay keeps them


@dataclass
class Snapshot:
    day: date
    placed: int
    waiting: int
    breaches: int
    rounds: int


@dataclass
class ReplayResult:
    policy: str
    publish_before_breach: int | None
    stream: Stream
    cases: dict[str, CaseRecord]
    offers: dict[str, Offer]  # as published (full capacity)
    offer_published: dict[str, datetime]
    withdrawn_slots: int
    rounds: int
    round_patients: int  # patients read by all rounds together (the incremental work)
    refused_commands: int  # answers that came too late, withdrawals of cases already gone
    series: list[Snapshot] = field(default_factory=list)


def published(stream: Stream, publish_before_breach: int | None, lifecycle: LifecyclePolicy) -> list[StreamEvent]:
    """The stream's events with pre-breach publication applied: a request goes out N days before
    its first patient's (predicted) breach when that is earlier than its own time, never before
    the stream starts or a patient's treatment decision; its window opens then too."""
    if publish_before_breach is None:
        return list(stream.events)
    out: list[StreamEvent] = []
    for e in stream.events:
        if isinstance(e, RequestArrival) and e.request.patients:
            r = e.request
            breaches = [p.breach_date or lifecycle.guarantee.guarantee_date(p.waiting_since) for p in r.patients]
            day = max(min(breaches) - timedelta(days=publish_before_breach), stream.start,
                      max(p.waiting_since for p in r.patients))
            at = day_start(day, 8)
            if at < e.at:
                patients = tuple(replace(p, breach_date=b) for p, b in zip(r.patients, breaches, strict=True))
                e = RequestArrival(at, replace(r, window_start=min(r.window_start, day), patients=patients))
        out.append(e)
    return sorted(out, key=lambda e: e.at)  # stable: equal times keep the stream's order


class Replay:
    def __init__(self, stream: Stream, policy: ClearingPolicy, *, publish_before_breach: int | None = None,
                 objective: Objective = CONTRACT, lifecycle: LifecyclePolicy = DEFAULT_POLICY,
                 keep_history: bool = False, full_resolve: bool = False) -> None:
        self.stream, self.policy, self.lifecycle = stream, policy, lifecycle
        self.full_resolve = full_resolve  # every round reads the whole book (benchmarks compare)
        self.keep_history = keep_history
        self.publish_before_breach = publish_before_breach
        self.objective = objective
        self.book = OpenBook(stream.agreements, name=stream.name)
        self.cases: dict[str, CaseRecord] = {}
        self.offers: dict[str, Offer] = {}
        self.offer_published: dict[str, datetime] = {}
        self._queue: list[tuple[datetime, int, int, str, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.rounds = self.round_patients = self.refused = self.withdrawn_slots = 0
        self._matches = itertools.count(1)
        self._tariff = default_tariff()
        self.series: list[Snapshot] = []
        self._placed = self._breaches = self._depth = 0

    # --- the clock ----------------------------------------------------------------------------

    def _at(self, when: datetime, order: int, kind: str, *args: Any) -> None:
        heapq.heappush(self._queue, (when, order, next(self._seq), kind, args))

    def run(self, progress: ProgressFn | None = None) -> ReplayResult:
        events = published(self.stream, self.publish_before_breach, self.lifecycle)
        for e in events:
            if isinstance(e, RecordedRound):
                if self.policy.cadence == "recorded":
                    self._at(e.at, ROUND, "recorded_round", e)
            elif not isinstance(e, RecordedRound):
                self._at(e.at, ARRIVAL, "arrival", e)
        for moment in self.policy.rounds(self.stream.start, self.stream.end):
            self._at(moment, ROUND, "batch_round")
        end = day_start(self.stream.end + timedelta(days=1))
        total, done = len(events), 0
        day = self.stream.start
        while self._queue and self._queue[0][0] < end:
            now = self._queue[0][0]
            while day < swedish_date(now):
                self._snapshot(day)
                day += timedelta(days=1)
            while self._queue and self._queue[0][0] == now:
                _, _, _, kind, args = heapq.heappop(self._queue)
                if kind == "arrival":
                    self._arrive(args[0], now)
                    done += 1
                    if progress is not None and (done % 500 == 0 or done == total):
                        progress(done, total)
                elif kind == "answer":
                    self._answer(now, *args)
                elif kind == "deadline":
                    self._deadline(now, *args)
                elif kind == "batch_round":
                    self._round(now, swedish_date(now), self.policy.solver, None)
                elif kind == "recorded_round":
                    r: RecordedRound = args[0]
                    self._round(now, r.as_of, r.policy, {r.care_area})
                else:
                    self._step(now, *args)
            if self.policy.cadence == "continuous" and self.book.dirty:
                self._round(now, swedish_date(now), self.policy.solver, None)
        while day <= self.stream.end:
            self._snapshot(day)
            day += timedelta(days=1)
        if progress is not None:
            progress(total, total)
        return ReplayResult(self.policy.name, self.publish_before_breach, self.stream, self.cases, self.offers,
                            self.offer_published, self.withdrawn_slots, self.rounds, self.round_patients,
                            self.refused, self.series)

    def _snapshot(self, day: date) -> None:
        self.series.append(Snapshot(day, self._placed, self.book.patient_count, self._breaches, self.rounds))

    # --- the world ----------------------------------------------------------------------------

    def _arrive(self, e: StreamEvent, now: datetime) -> None:
        if isinstance(e, OfferArrival):
            self.offers[e.offer.offer_id] = e.offer
            self.offer_published[e.offer.offer_id] = now
            self.book.add_offer(e.offer)
        elif isinstance(e, RequestArrival):
            terms = replace(e.request, patients=())
            for p in e.request.patients:
                cmd = IdentifyNeed(p.case_ref, request_id=terms.request_id, home_region=terms.region,
                                   care_area=terms.care_area, waiting_since=p.waiting_since,
                                   window_end=terms.window_end)
                opened = decide(None, cmd, now, self.lifecycle)
                state = apply(None, opened)
                assert state is not None
                record = self.cases[p.case_ref] = CaseRecord(state, terms, p, now,
                                                             history=list(opened) if self.keep_history else None)
                self._decide(record, PlaceOnBook(p.case_ref), now)
            if self.objective.is_contract:
                # Without pre-breach weighting the book carries no predicted breach dates.
                patients = [replace(p, breach_date=None) for p in e.request.patients]
            else:
                patients = list(e.request.patients)
            self.book.add_patients(terms, [p for p in patients if self.cases[p.case_ref].state.status
                                           is CaseStatus.ON_BOOK])
        elif isinstance(e, OfferWithdrawal):
            if e.offer_id in self.offers:
                self.withdrawn_slots += self.book.withdraw_offer(e.offer_id)
        elif isinstance(e, CaseWithdrawal):
            withdrawn = self.cases.get(e.case_ref)
            # The home region takes back a patient still waiting on the book, not one who has
            # a proposal running or accepted one.
            if withdrawn is None or withdrawn.state.status is not CaseStatus.ON_BOOK or not self._decide(
                    withdrawn, Withdraw(e.case_ref, reason=WithdrawalReason.FOUND_SLOT_IN_HOME_REGION), now):
                self.refused += 1
            elif withdrawn.state.status is CaseStatus.WITHDRAWN:
                withdrawn.withdrawn_on = swedish_date(now)

    # --- cases --------------------------------------------------------------------------------

    def _decide(self, record: CaseRecord, command: Command, now: datetime) -> bool:
        """Decide and apply one command; react to what it caused. False when the lifecycle
        refused it (a late answer, a withdrawal of a case already past it)."""
        try:
            events = decide(record.state, command, now, self.lifecycle)
        except DomainError:
            return False
        state = apply(record.state, events)
        assert state is not None
        record.state = state
        if record.history is not None:
            record.history.extend(events)
        self._depth += 1
        try:
            for event in events:
                self._react(record, event, now)
        finally:
            self._depth -= 1
        if self._depth == 0:
            # Once per outer decision: the commands it set off have moved the case on already.
            self._schedule_deadline(record)
        return True

    def _react(self, record: CaseRecord, event: CaseEvent, now: datetime) -> None:
        case_ref = record.state.case_ref
        if isinstance(event, MatchHeld):
            self._party_answers(record, "provider", event.match.match_id, event.match.offer_id, now)
        elif isinstance(event, ProviderAcceptedMatch):
            self._decide(record, OfferToPatient(case_ref), now)
            assert record.state.match is not None
            self._party_answers(record, "patient", event.match_id, record.state.match.offer_id, now)
        elif isinstance(event, HoldReleased):
            self.book.return_slots(event.offer_id)
            if record.state.status is CaseStatus.ON_BOOK:
                p = record.patient
                self.book.add_patients(record.request, [Patient(
                    case_ref, p.waiting_since, record.state.excluded_offer_ids,
                    None if self.objective.is_contract else p.breach_date)])
        elif isinstance(event, PatientAcceptedOffer):
            record.placed_at = record.state.matched_at
            self._placed += 1
            self._decide(record, SendReferral(case_ref, referral_id=f"ref-{event.match_id}"), now)
            self._at(after(now, self.stream.behaviour.referral_ack_hours), ANSWER, "step", case_ref, "ack")
        elif isinstance(event, ReferralAcknowledged):
            assert record.state.match is not None
            offer = self.offers[record.state.match.offer_id]
            today = swedish_date(now)
            wanted = max(today + timedelta(days=self.stream.behaviour.care_lead_days), offer.window_start)
            day = max(min(wanted, offer.window_end), today)
            self._decide(record, Schedule(case_ref, scheduled_for=day), now)
            self._at(day_start(day, 10), ANSWER, "step", case_ref, "perform")
        elif isinstance(event, GuaranteeWarningRaised) and event.days_left < 0:
            record.breach_warned = True
            self._breaches += 1
        if record.state.status in (CaseStatus.EXPIRED, CaseStatus.WITHDRAWN, CaseStatus.CANCELLED):
            self.book.remove_patient(case_ref)

    def _party_answers(self, record: CaseRecord, party: str, match_id: str, offer_id: str, now: datetime) -> None:
        r = reply(self.stream, party, record.state.case_ref, offer_id)  # type: ignore[arg-type]
        if r.answer == "none":
            return  # the hold lapses at its deadline
        when = after(now, r.delay_hours)
        if r.recorded:
            recorded = self.stream.answers[record.state.case_ref, offer_id, party]
            when = max(now, recorded.at)
        self._at(when, ANSWER, "answer", record.state.case_ref, party, match_id, r.answer)

    def _answer(self, now: datetime, case_ref: str, party: str, match_id: str, answer: str) -> None:
        record = self.cases[case_ref]
        command: Command
        if party == "provider":
            command = (AcceptMatch(case_ref, match_id=match_id) if answer == "accept" else
                       DeclineMatch(case_ref, match_id=match_id, reason_code=ProviderDeclineReason.NO_CAPACITY))
        else:
            command = (RecordPatientAnswer(case_ref, match_id=match_id, accepted=True) if answer == "accept" else
                       RecordPatientAnswer(case_ref, match_id=match_id, accepted=False,
                                           reason_code=PatientDeclineReason.DATE_UNSUITABLE))
        if not self._decide(record, command, now):
            self.refused += 1

    def _step(self, now: datetime, case_ref: str, what: str) -> None:
        record = self.cases[case_ref]
        if what == "ack" and record.state.referral_id is not None:
            self._decide(record, AcknowledgeReferral(case_ref, referral_id=record.state.referral_id), now)
        elif what == "perform" and record.state.scheduled_for is not None:
            self._decide(record, RecordPerformed(case_ref, performed_on=record.state.scheduled_for), now)

    def _schedule_deadline(self, record: CaseRecord, later_than: datetime | None = None) -> None:
        upcoming = next_deadline(record.state, self.lifecycle)
        if upcoming is not None and (later_than is None or upcoming.due_at > later_than):
            self._at(upcoming.due_at, DEADLINE, "deadline", record.state.case_ref, record.state.version)

    def _deadline(self, now: datetime, case_ref: str, version: int) -> None:
        record = self.cases[case_ref]
        if record.state.version != version:
            return  # the case moved on; its newer deadline is queued
        fired = False
        for due in due_deadlines(record.state, now, self.lifecycle):
            fired = self._decide(record, due.command, now) or fired
        if not fired:
            self._schedule_deadline(record, later_than=now)

    # --- rounds -------------------------------------------------------------------------------

    def _round(self, now: datetime, as_of: date, solver: str, areas: set[str] | None) -> None:
        if self.full_resolve:
            self.book.touch_all()
        allocation = self.book.clear(as_of, solver, self.objective, areas)  # type: ignore[arg-type]
        self.rounds += 1
        self.round_patients += self.book.last_round.patients
        for p in allocation.placements:
            if p.offer_id is not None:
                self._propose(self.cases[p.case_ref], p, now)

    def _propose(self, record: CaseRecord, p: Placement, now: datetime) -> None:
        assert p.offer_id is not None
        offer = self.offers[p.offer_id]
        record.proposed.append(offer.offer_id)
        travel, stay = ancillary_split(p.ancillary_cost_sek, p.distance_km, self._tariff)
        match_id = f"m{next(self._matches):07d}"
        cmd = ProposeMatch(record.state.case_ref, match_id=match_id, offer_id=offer.offer_id,
                           providing_region=offer.region, unit_hsa_id=offer.unit_hsa_id,
                           price_sek=Decimal(str(offer.price_sek)), travel_sek=travel, accommodation_sek=stay,
                           distance_km=p.distance_km)
        if not self._decide(record, cmd, now):
            # The lifecycle refused the match (cannot happen for a case on the book): give the
            # slot back rather than lose it.
            self.refused += 1
            self.book.return_slots(offer.offer_id)
