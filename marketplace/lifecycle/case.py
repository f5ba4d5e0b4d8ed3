"""A case's state, and the two functions that are its whole behaviour.

- `decide(state, command, now, policy)` checks the command against the rules and returns the
  events it causes, or raises a `DomainError`. It changes nothing.
- `evolve(state, event)` folds one event into the state. It trusts the event (a fact already
  recorded) and does not re-check rules that held when it was decided.

So a case is `replay(its events)`, whether the events were just decided or read back from the
timeline. Time is always passed in; nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from events.envelope import stable_event_id
from marketplace.lifecycle.commands import (
    AcceptMatch,
    AcknowledgeReferral,
    Cancel,
    Close,
    Command,
    DeclineMatch,
    EscalateReferral,
    ExpireCase,
    ExpireHold,
    IdentifyNeed,
    Invoice,
    OfferToPatient,
    PlaceOnBook,
    ProposeMatch,
    RecordFollowUp,
    RecordPatientAnswer,
    RecordPayment,
    RecordPerformed,
    Schedule,
    SendReferral,
    WarnGuarantee,
    Withdraw,
)
from marketplace.lifecycle.errors import IllegalTransition, InvalidCommand, NotDueYet, StaleCommand
from marketplace.lifecycle.events import (
    CarePerformed,
    CareScheduled,
    CaseCancelled,
    CaseClosed,
    CaseEvent,
    CaseExpired,
    CaseInvoiced,
    CaseSettled,
    CaseWithdrawn,
    FollowUpRecorded,
    GuaranteeWarningRaised,
    HoldExpired,
    HoldReleased,
    MatchHeld,
    NeedIdentified,
    OfferedToPatient,
    PatientAcceptedOffer,
    PatientDeclinedOffer,
    PaymentRecorded,
    PlacedOnBook,
    ProviderAcceptedMatch,
    ProviderDeclinedMatch,
    ReferralAcknowledged,
    ReferralEscalated,
    ReferralSent,
)
from marketplace.lifecycle.guarantee import BREACH, warning_due_on
from marketplace.lifecycle.holds import LockedMatch
from marketplace.lifecycle.money import ZERO, money
from marketplace.lifecycle.policy import DEFAULT_POLICY, LifecyclePolicy
from marketplace.lifecycle.reasons import HoldPhase, ReleaseCause
from marketplace.lifecycle.settlement import Settlement
from marketplace.lifecycle.states import (
    HOLD_EXPIRES,
    SLOT_RESERVED,
    TERMINAL,
    CaseStatus,
    allowed_commands,
)
from marketplace.lifecycle.swedish_time import require_aware, start_of_swedish_day, swedish_date

S = CaseStatus
E = TypeVar("E", bound=CaseEvent)


@dataclass(frozen=True)
class CaseState:
    """Everything the rules, the deadlines, the settlement and the stats need about one case."""

    case_ref: str
    request_id: str
    home_region: str
    care_area: str
    waiting_since: date
    guarantee_date: date
    window_end: date | None
    identified_at: datetime
    status: CaseStatus
    status_since: datetime
    version: int
    # The slot reserved now (from proposal until released), kept after care for the settlement.
    match: LockedMatch | None = None
    matched_at: datetime | None = None
    hold_expires_at: datetime | None = None
    excluded_offer_ids: frozenset[str] = frozenset()
    matches_proposed: int = 0
    referral_id: str | None = None
    referred_at: datetime | None = None
    referral_escalations: int = 0
    referral_acknowledged_at: datetime | None = None
    scheduled_for: date | None = None
    performed_on: date | None = None
    followed_up_at: datetime | None = None
    invoice_id: str | None = None
    settlement: Settlement | None = None
    paid_sek: Decimal = ZERO
    guarantee_warned_days_left: int | None = None
    end_reason: str | None = None

    @property
    def slot_reserved(self) -> bool:
        return self.status in SLOT_RESERVED

    @property
    def hold_phase(self) -> HoldPhase | None:
        """Whose answer the hold is waiting for, while it can still expire."""
        if self.status is S.MATCH_PROPOSED:
            return HoldPhase.PROVIDER_ANSWER
        if self.status in HOLD_EXPIRES:
            return HoldPhase.PATIENT_ANSWER
        return None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def outstanding_sek(self) -> Decimal:
        if self.settlement is None:
            return ZERO
        return money(self.settlement.invoice_total_sek - self.paid_sek)

    def next_referral_escalation_due(self, after: timedelta) -> datetime | None:
        """When the unanswered referral escalates next (every `after`, counted from sending)."""
        if self.status is not S.REFERRED or self.referred_at is None:
            return None
        return self.referred_at + after * (self.referral_escalations + 1)

    @property
    def case_expiry_due(self) -> datetime | None:
        """An unmatched case expires at the start of the day after its request window ends."""
        if self.window_end is None or self.status not in (S.NEED_IDENTIFIED, S.ON_BOOK):
            return None
        return start_of_swedish_day(self.window_end + timedelta(days=1))


# --- decide ---------------------------------------------------------------------------------


class _Stamp:
    """Makes the events of one decision: same case, same moment, ids stable per command."""

    def __init__(self, case_ref: str, now: datetime, base_id: UUID) -> None:
        self.case_ref = case_ref
        self.now = now
        self._ids: Iterator[UUID] = (stable_event_id(base_id, i) for i in itertools.count())

    def __call__(self, cls: type[E], **fields: Any) -> E:
        return cls(event_id=next(self._ids), case_ref=self.case_ref, occurred_at=self.now, **fields)


def _command_fingerprint(command: Command) -> str:
    fields = {f.name: getattr(command, f.name) for f in dataclasses.fields(command)
              if f.name != "command_id"}
    return json.dumps({"name": command.NAME, **fields}, sort_keys=True, separators=(",", ":"),
                      default=str)


def _base_id(state: CaseState | None, command: Command) -> UUID:
    if command.command_id is not None:
        return command.command_id
    version = state.version if state is not None else 0
    return stable_event_id("case-command", command.case_ref, version, _command_fingerprint(command))


Handler = Callable[[Any, Any, _Stamp, LifecyclePolicy], list[CaseEvent]]


def decide(state: CaseState | None, command: Command, now: datetime,
           policy: LifecyclePolicy = DEFAULT_POLICY) -> list[CaseEvent]:
    """The events `command` causes on `state` at `now` (None: no case yet), or a DomainError.

    Raises IllegalTransition when the command is not legal in the current state, InvalidCommand
    when its content breaks a rule, StaleCommand when it answers a situation that has passed,
    NotDueYet when a deadline command comes early. Deciding the same command on the same state
    gives the same events with the same ids.
    """
    require_aware(now)
    status = state.status if state is not None else None
    allowed = allowed_commands(status)
    if command.NAME not in allowed:
        raise IllegalTransition(command.NAME, status, allowed)
    if state is not None and command.case_ref != state.case_ref:
        raise InvalidCommand(f"command is for case {command.case_ref!r}, not {state.case_ref!r}")
    stamp = _Stamp(command.case_ref, now, _base_id(state, command))
    return _HANDLERS[type(command)](state, command, stamp, policy)


def _identify_need(_: None, c: IdentifyNeed, mk: _Stamp, policy: LifecyclePolicy) -> list[CaseEvent]:
    return [mk(NeedIdentified, request_id=c.request_id, home_region=c.home_region,
               care_area=c.care_area, waiting_since=c.waiting_since,
               guarantee_date=policy.guarantee.guarantee_date(c.waiting_since),
               window_end=c.window_end)]


def _place_on_book(s: CaseState, c: PlaceOnBook, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    return [mk(PlacedOnBook)]


def _propose_match(s: CaseState, c: ProposeMatch, mk: _Stamp, policy: LifecyclePolicy) -> list[CaseEvent]:
    if c.offer_id in s.excluded_offer_ids:
        raise InvalidCommand(f"offer {c.offer_id!r} was already declined or lapsed for case {s.case_ref!r}")
    match = c.locked()
    if min(match.price_sek, match.travel_sek, match.accommodation_sek) < 0 or match.distance_km < 0:
        raise InvalidCommand("price, ancillary costs and distance must not be negative")
    due = policy.holds.provider_answer_due(match.providing_region, mk.now)
    return [mk(MatchHeld, match=match, provider_answer_due=due)]


def _current_match(s: CaseState, match_id: str) -> LockedMatch:
    # An answer for another match than the one held now belongs to a hold already released.
    if s.match is None or s.match.match_id != match_id:
        held = s.match.match_id if s.match else None
        raise StaleCommand(f"match {match_id!r} is not the match held by case {s.case_ref!r} ({held!r})")
    return s.match


def _require_hold_running(s: CaseState, now: datetime) -> None:
    # A hold covers [start, due): from its due time on, only its expiry may happen, however late
    # the sweeper is, so the outcome never depends on how fast a worker ran.
    if s.hold_expires_at is not None and now >= s.hold_expires_at:
        raise InvalidCommand(f"the hold on case {s.case_ref!r} lapsed at {s.hold_expires_at.isoformat()}")


def _release(s: CaseState, mk: _Stamp, cause: ReleaseCause) -> list[CaseEvent]:
    if not s.slot_reserved or s.match is None:
        return []
    # The provider knows of the match from its proposal on; only its own decline needs no news.
    return [mk(HoldReleased, match_id=s.match.match_id, offer_id=s.match.offer_id,
               providing_region=s.match.providing_region, unit_hsa_id=s.match.unit_hsa_id,
               cause=cause, notify_provider=cause is not ReleaseCause.PROVIDER_DECLINED,
               referral_id=s.referral_id)]


def _accept_match(s: CaseState, c: AcceptMatch, mk: _Stamp, policy: LifecyclePolicy) -> list[CaseEvent]:
    _current_match(s, c.match_id)
    _require_hold_running(s, mk.now)
    due = policy.holds.patient_answer_due(s.home_region, mk.now)
    return [mk(ProviderAcceptedMatch, match_id=c.match_id, patient_answer_due=due)]


def _decline_match(s: CaseState, c: DeclineMatch, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    # A decline after the due time is still taken: it releases the slot just as the expiry
    # would, and its reason code is worth having.
    m = _current_match(s, c.match_id)
    return [mk(ProviderDeclinedMatch, match_id=m.match_id, offer_id=m.offer_id,
               reason_code=c.reason_code, note=c.note),
            *_release(s, mk, ReleaseCause.PROVIDER_DECLINED)]


def _offer_to_patient(s: CaseState, c: OfferToPatient, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    _require_hold_running(s, mk.now)
    assert s.match is not None  # provider_accepted always holds a match
    return [mk(OfferedToPatient, match_id=s.match.match_id)]


def _record_patient_answer(s: CaseState, c: RecordPatientAnswer, mk: _Stamp,
                           _: LifecyclePolicy) -> list[CaseEvent]:
    m = _current_match(s, c.match_id)
    if c.accepted:
        if c.reason_code is not None:
            raise InvalidCommand("an accepted offer takes no decline reason")
        _require_hold_running(s, mk.now)
        return [mk(PatientAcceptedOffer, match_id=m.match_id)]
    if c.reason_code is None:
        raise InvalidCommand("a declined offer needs a reason code")
    return [mk(PatientDeclinedOffer, match_id=m.match_id, offer_id=m.offer_id,
               reason_code=c.reason_code, note=c.note),
            *_release(s, mk, ReleaseCause.PATIENT_DECLINED)]


def _send_referral(s: CaseState, c: SendReferral, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    assert s.match is not None
    return [mk(ReferralSent, referral_id=c.referral_id, match_id=s.match.match_id,
               providing_region=s.match.providing_region, unit_hsa_id=s.match.unit_hsa_id)]


def _acknowledge_referral(s: CaseState, c: AcknowledgeReferral, mk: _Stamp,
                          _: LifecyclePolicy) -> list[CaseEvent]:
    if c.referral_id != s.referral_id:
        raise InvalidCommand(f"case {s.case_ref!r} sent referral {s.referral_id!r}, not {c.referral_id!r}")
    return [mk(ReferralAcknowledged, referral_id=c.referral_id)]


def _escalate_referral(s: CaseState, c: EscalateReferral, mk: _Stamp,
                       policy: LifecyclePolicy) -> list[CaseEvent]:
    due = s.next_referral_escalation_due(policy.referral_escalation_after)
    if c.referral_id != s.referral_id or due is None or c.due_at != due:
        raise StaleCommand(f"no escalation of referral {c.referral_id!r} is due at {c.due_at.isoformat()}")
    if mk.now < due:
        raise NotDueYet(f"the referral escalates at {due.isoformat()}")
    return [mk(ReferralEscalated, referral_id=c.referral_id, escalation=s.referral_escalations + 1,
               due_at=due)]


def _schedule(s: CaseState, c: Schedule, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    if c.scheduled_for == s.scheduled_for:
        return []  # already booked for that day: nothing happened
    return [mk(CareScheduled, scheduled_for=c.scheduled_for, previous=s.scheduled_for)]


def _record_performed(s: CaseState, c: RecordPerformed, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    if c.performed_on > swedish_date(mk.now):
        raise InvalidCommand(f"care cannot be recorded as performed on a future day ({c.performed_on})")
    if c.performed_on < s.waiting_since:
        raise InvalidCommand(f"care cannot be performed before the treatment decision ({s.waiting_since})")
    return [mk(CarePerformed, performed_on=c.performed_on)]


def _record_follow_up(s: CaseState, c: RecordFollowUp, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    return [mk(FollowUpRecorded, note=c.note)]


def _invoice(s: CaseState, c: Invoice, mk: _Stamp, policy: LifecyclePolicy) -> list[CaseEvent]:
    assert s.match is not None
    settlement = Settlement.for_match(s.match, s.home_region, policy.co_payments.for_region(s.home_region))
    events: list[CaseEvent] = [mk(CaseInvoiced, invoice_id=c.invoice_id, settlement=settlement)]
    if settlement.invoice_total_sek == 0:
        # Nothing to pay would otherwise leave the case waiting for a payment that never comes.
        events.append(mk(CaseSettled, paid_total_sek=ZERO))
    return events


def _record_payment(s: CaseState, c: RecordPayment, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    amount = money(c.amount_sek)
    if amount <= 0:
        raise InvalidCommand("a payment must be a positive amount")
    if amount > s.outstanding_sek:
        raise InvalidCommand(f"payment {amount} exceeds the {s.outstanding_sek} SEK outstanding")
    paid = money(s.paid_sek + amount)
    events: list[CaseEvent] = [mk(PaymentRecorded, payment_ref=c.payment_ref, amount_sek=amount,
                                  paid_total_sek=paid)]
    if amount == s.outstanding_sek:
        events.append(mk(CaseSettled, paid_total_sek=paid))
    return events


def _close(s: CaseState, c: Close, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    return [mk(CaseClosed)]


def _withdraw(s: CaseState, c: Withdraw, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    return [mk(CaseWithdrawn, reason=c.reason, note=c.note), *_release(s, mk, ReleaseCause.WITHDRAWN)]


def _cancel(s: CaseState, c: Cancel, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    if not c.reason.strip():
        raise InvalidCommand("a cancellation needs a reason")
    return [mk(CaseCancelled, reason=c.reason), *_release(s, mk, ReleaseCause.CANCELLED)]


def _expire_hold(s: CaseState, c: ExpireHold, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    m = _current_match(s, c.match_id)
    phase = s.hold_phase
    if s.hold_expires_at is None or phase is None or c.due_at != s.hold_expires_at:
        raise StaleCommand(f"the hold of case {s.case_ref!r} is not due at {c.due_at.isoformat()}")
    if mk.now < s.hold_expires_at:
        raise NotDueYet(f"the hold of case {s.case_ref!r} lapses at {s.hold_expires_at.isoformat()}")
    return [mk(HoldExpired, match_id=m.match_id, offer_id=m.offer_id, phase=phase, due_at=c.due_at),
            *_release(s, mk, ReleaseCause.HOLD_EXPIRED)]


def _expire_case(s: CaseState, c: ExpireCase, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    due = s.case_expiry_due
    if due is None:
        raise InvalidCommand(f"case {s.case_ref!r} has no request window to expire with")
    if c.due_at != due:
        raise StaleCommand(f"case {s.case_ref!r} expires at {due.isoformat()}, not {c.due_at.isoformat()}")
    if mk.now < due:
        raise NotDueYet(f"case {s.case_ref!r} expires at {due.isoformat()}")
    return [mk(CaseExpired, due_at=due)]


def _warn_guarantee(s: CaseState, c: WarnGuarantee, mk: _Stamp, _: LifecyclePolicy) -> list[CaseEvent]:
    if c.days_left < BREACH:
        raise InvalidCommand(f"days_left must be {BREACH} (breach) or more")
    if c.due_on != warning_due_on(s.guarantee_date, c.days_left):
        raise InvalidCommand(f"a warning at {c.days_left} days left is due on "
                             f"{warning_due_on(s.guarantee_date, c.days_left)}, not {c.due_on}")
    warned = s.guarantee_warned_days_left
    if warned is not None and c.days_left >= warned:
        raise StaleCommand(f"case {s.case_ref!r} was already warned at {warned} days left")
    if swedish_date(mk.now) < c.due_on:
        raise NotDueYet(f"the warning is due on {c.due_on}")
    return [mk(GuaranteeWarningRaised, days_left=c.days_left, due_on=c.due_on,
               guarantee_date=s.guarantee_date)]


_HANDLERS: dict[type[Command], Handler] = {
    IdentifyNeed: _identify_need,
    PlaceOnBook: _place_on_book,
    ProposeMatch: _propose_match,
    AcceptMatch: _accept_match,
    DeclineMatch: _decline_match,
    OfferToPatient: _offer_to_patient,
    RecordPatientAnswer: _record_patient_answer,
    SendReferral: _send_referral,
    AcknowledgeReferral: _acknowledge_referral,
    EscalateReferral: _escalate_referral,
    Schedule: _schedule,
    RecordPerformed: _record_performed,
    RecordFollowUp: _record_follow_up,
    Invoice: _invoice,
    RecordPayment: _record_payment,
    Close: _close,
    Withdraw: _withdraw,
    Cancel: _cancel,
    ExpireHold: _expire_hold,
    ExpireCase: _expire_case,
    WarnGuarantee: _warn_guarantee,
}


# --- evolve ---------------------------------------------------------------------------------


def _move(s: CaseState, status: CaseStatus, at: datetime, **changes: Any) -> CaseState:
    since = s.status_since if status is s.status else at
    return replace(s, status=status, status_since=since, **changes)


def _back_on_book(s: CaseState, offer_id: str, at: datetime) -> CaseState:
    # The offer that failed this patient is not proposed to them again; the slot itself goes
    # back to the offer for everyone else (see HoldReleased).
    return _move(s, S.ON_BOOK, at, match=None, matched_at=None, hold_expires_at=None,
                 excluded_offer_ids=s.excluded_offer_ids | {offer_id})


def _ended(s: CaseState, status: CaseStatus, at: datetime, reason: str) -> CaseState:
    return _move(s, status, at, match=None, matched_at=None, hold_expires_at=None, end_reason=reason)


def evolve(state: CaseState | None, event: CaseEvent) -> CaseState:
    """`state` after `event`. Raises ValueError for a history that cannot be (no opening event,
    an event of another case)."""
    if isinstance(event, NeedIdentified):
        if state is not None:
            raise ValueError(f"case {event.case_ref!r} is already open")
        return CaseState(
            case_ref=event.case_ref, request_id=event.request_id, home_region=event.home_region,
            care_area=event.care_area, waiting_since=event.waiting_since,
            guarantee_date=event.guarantee_date, window_end=event.window_end,
            identified_at=event.occurred_at, status=S.NEED_IDENTIFIED,
            status_since=event.occurred_at, version=1,
        )
    if state is None:
        raise ValueError(f"a case's history starts with {NeedIdentified.TYPE}, not {event.TYPE}")
    if event.case_ref != state.case_ref:
        raise ValueError(f"event of case {event.case_ref!r} applied to case {state.case_ref!r}")
    s = replace(state, version=state.version + 1)
    at = event.occurred_at
    match event:
        case PlacedOnBook():
            return _move(s, S.ON_BOOK, at)
        case MatchHeld(match=m, provider_answer_due=due):
            return _move(s, S.MATCH_PROPOSED, at, match=m, matched_at=at, hold_expires_at=due,
                         matches_proposed=s.matches_proposed + 1)
        case ProviderAcceptedMatch(patient_answer_due=due):
            return _move(s, S.PROVIDER_ACCEPTED, at, hold_expires_at=due)
        case ProviderDeclinedMatch(offer_id=offer) | PatientDeclinedOffer(offer_id=offer) | HoldExpired(
            offer_id=offer
        ):
            return _back_on_book(s, offer, at)
        case OfferedToPatient():
            return _move(s, S.OFFERED_TO_PATIENT, at)
        case PatientAcceptedOffer():
            return _move(s, S.PATIENT_ACCEPTED, at, hold_expires_at=None)
        case HoldReleased():
            return s  # told to the world; the causing event already changed the case
        case ReferralSent(referral_id=rid):
            return _move(s, S.REFERRED, at, referral_id=rid, referred_at=at)
        case ReferralEscalated(escalation=n):
            return replace(s, referral_escalations=n)
        case ReferralAcknowledged():
            return _move(s, S.REFERRAL_ACKNOWLEDGED, at, referral_acknowledged_at=at)
        case CareScheduled(scheduled_for=day):
            return _move(s, S.SCHEDULED, at, scheduled_for=day)
        case CarePerformed(performed_on=day):
            return _move(s, S.PERFORMED, at, performed_on=day)
        case FollowUpRecorded():
            return _move(s, S.FOLLOWED_UP, at, followed_up_at=at)
        case CaseInvoiced(invoice_id=iid, settlement=settlement):
            return _move(s, S.INVOICED, at, invoice_id=iid, settlement=settlement)
        case PaymentRecorded(paid_total_sek=paid):
            return replace(s, paid_sek=paid)
        case CaseSettled():
            return _move(s, S.SETTLED, at)
        case CaseClosed():
            return _move(s, S.CLOSED, at)
        case CaseWithdrawn(reason=reason):
            return _ended(s, S.WITHDRAWN, at, reason.value)
        case CaseCancelled(reason=reason):
            return _ended(s, S.CANCELLED, at, reason)
        case CaseExpired():
            return _ended(s, S.EXPIRED, at, "request window ended")
        case GuaranteeWarningRaised(days_left=days):
            return replace(s, guarantee_warned_days_left=days)
    raise ValueError(f"unknown case event {type(event).__name__}")


def replay(events: Iterable[CaseEvent]) -> CaseState:
    """The state a history leads to. Raises ValueError for an empty or impossible history."""
    state: CaseState | None = None
    for event in events:
        state = evolve(state, event)
    if state is None:
        raise ValueError("an empty history has no case")
    return state


def apply(state: CaseState | None, events: Iterable[CaseEvent]) -> CaseState | None:
    """Fold `events` into `state` (which may be None before the case opens)."""
    for event in events:
        state = evolve(state, event)
    return state
