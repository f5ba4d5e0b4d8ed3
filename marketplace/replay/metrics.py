"""What a replay achieved, and the hindsight optimum it is measured against.

Per policy (all over the stream's patients):

- `placed`: patients who accepted a proposed slot (the slot is theirs; declines and lapsed holds
  do not count).
- `wait_days`: days from each patient's treatment decision to the day of the proposal they
  accepted; for a patient never placed, to the day they were withdrawn or to the replay's last
  day. Lower is better: it counts a long wait whether or not it ended in a placement.
- `time to match`: days from publication to the accepted proposal, median and 90th percentile
  (nearest rank) over the placed.
- `breaches`: patients whose guarantee date falls before the replay's end and whose care was not
  performed by then (withdrawn patients excepted).
- `capacity expired unused`: slots published and never used, less those the providers withdrew.
- procedure and ancillary cost of the placed, as locked in their matches.

**The hindsight optimum** clears the same stream as one book, as if every offer and request had
been known at the start: the contract's optimum of all offers (full capacity) against all
patients, windows and rules as published. A patient it places is matched on the later of their
publication and the offer's; care follows the same lead time as in the replay. It ignores
declines, lapsed holds and withdrawals, so no online policy places more patients than it does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta

from marketplace.lifecycle import LifecyclePolicy
from marketplace.lifecycle.swedish_time import swedish_date
from marketplace.replay.engine import ReplayResult, published
from marketplace.replay.parties import refusal_test
from marketplace.replay.stream import OfferArrival, RequestArrival, Stream
from matchers.clearing import clear
from matchers.feasibility import failing_rule
from matchers.model import Offer, Patient, Request, Scenario

METRICS = ("placed", "wait_days", "match_days_median", "match_days_p90", "breaches", "capacity_unused",
           "procedure_sek", "ancillary_sek")
HIGHER_IS_BETTER = {"placed"}


@dataclass(frozen=True)
class Metrics:
    patients: int
    placed: int
    wait_days: int
    match_days_median: float
    match_days_p90: float
    breaches: int
    capacity_unused: int
    procedure_sek: float
    ancillary_sek: float

    def value(self, name: str) -> float:
        return float(getattr(self, name))


def _rank(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, -(-int(q * 100) * len(ordered) // 100) - 1))
    return round(ordered[k], 1)


def replay_metrics(result: ReplayResult) -> Metrics:
    stream = result.stream
    placed = wait = breaches = 0
    proc = anc = 0  # in öre: no float drift
    match_days: list[float] = []
    for record in result.cases.values():
        s = record.state
        if record.placed_at is not None:
            placed += 1
            until = swedish_date(record.placed_at)
            match_days.append((record.placed_at - record.published_at).total_seconds() / 86400)
            assert s.match is not None
            proc += round(s.match.price_sek * 100)
            anc += round((s.match.travel_sek + s.match.accommodation_sek) * 100)
        else:
            until = record.withdrawn_on or stream.end
        wait += max(0, (until - s.waiting_since).days)
        if record.withdrawn_on is None and s.guarantee_date < stream.end and (
                s.performed_on is None or s.performed_on > s.guarantee_date):
            breaches += 1
    capacity = sum(o.capacity for o in result.offers.values())
    return Metrics(len(result.cases), placed, wait, _rank(match_days, 0.5), _rank(match_days, 0.9), breaches,
                   capacity - placed - result.withdrawn_slots, proc / 100, anc / 100)


ANSWERS_KNOWN_UP_TO = 20_000
"""Patients up to which the hindsight optimum knows the parties' answers by default: knowing them
makes every patient a request class of their own (their refused slots differ), and a 50 000-patient
book of single-patient classes takes minutes to clear where it otherwise takes seconds."""


def hindsight_knows_answers(stream: Stream, knows_answers: bool | None = None) -> bool:
    return stream.patient_count <= ANSWERS_KNOWN_UP_TO if knows_answers is None else knows_answers


def hindsight_metrics(stream: Stream, lifecycle: LifecyclePolicy, publish_before_breach: int | None = None,
                      knows_answers: bool | None = None) -> Metrics:
    events = published(stream, publish_before_breach, lifecycle)
    offers = [e for e in events if isinstance(e, OfferArrival)]
    requests = [e for e in events if isinstance(e, RequestArrival)]
    by_area: dict[str, list[Offer]] = defaultdict(list)
    for e in offers:
        by_area[e.offer.care_area].append(e.offer)
    refused = refusal_test(stream)
    if not hindsight_knows_answers(stream, knows_answers):
        known = [e.request for e in requests]
    else:
        known = _with_refusals(stream, requests, by_area, refused)
    book = Scenario(f"{stream.name} (hindsight)", stream.start, stream.agreements,
                    tuple(e.offer for e in offers), tuple(known))
    return _placed_metrics(stream, lifecycle, book, offers, requests)


def _with_refusals(stream: Stream, requests: list[RequestArrival], by_area: dict[str, list[Offer]],
                   refused: Callable[[str, str], bool]) -> list[Request]:
    agreements = frozenset(stream.agreements)
    known: list[Request] = []
    for arrival in requests:
        r = arrival.request
        feasible = [o.offer_id for o in by_area[r.care_area]
                    if failing_rule(r, o, stream.start, agreements) is None]
        # The answers are part of the stream: a slot the patient or provider would refuse is
        # never proposed in hindsight.
        known.append(replace(r, patients=tuple(
            Patient(p.case_ref, p.waiting_since, frozenset(o for o in feasible if refused(p.case_ref, o)))
            for p in r.patients)))
    return known


def _placed_metrics(stream: Stream, lifecycle: LifecyclePolicy, book: Scenario, offers: list[OfferArrival],
                    requests: list[RequestArrival]) -> Metrics:
    allocation = clear(book, "optimal")
    offer_day = {e.offer.offer_id: swedish_date(e.at) for e in offers}
    offer_of = {e.offer.offer_id: e.offer for e in offers}
    published_day = {p.case_ref: swedish_date(e.at) for e in requests for p in e.request.patients}
    patients = {p.case_ref: p for e in requests for p in e.request.patients}
    lead = timedelta(days=stream.behaviour.care_lead_days + 1)  # acknowledged the next day, then booked
    wait = breaches = 0
    match_days: list[float] = []
    for p in allocation.placements:
        patient = patients[p.case_ref]
        guarantee = lifecycle.guarantee.guarantee_date(patient.waiting_since)
        care: date | None = None
        if p.offer_id is not None:
            day = max(published_day[p.case_ref], offer_day[p.offer_id])
            match_days.append(float((day - published_day[p.case_ref]).days))
            offer = offer_of[p.offer_id]
            care = max(min(max(day + lead, offer.window_start), offer.window_end), day)
            until = day
        else:
            until = stream.end
        wait += max(0, (until - patient.waiting_since).days)
        if guarantee < stream.end and (care is None or care > guarantee):
            breaches += 1
    capacity = sum(e.offer.capacity for e in offers)
    return Metrics(allocation.patients, allocation.placed, wait, _rank(match_days, 0.5), _rank(match_days, 0.9),
                   breaches, capacity - allocation.placed, allocation.procedure_cost_sek,
                   allocation.ancillary_cost_sek)


def ratio(value: float, reference: float) -> float | None:
    if reference == 0:
        return None if value else 1.0
    return round(value / reference, 4)
