"""Incremental clearing gives exactly the whole book's optimum, round after round (Hypothesis
against a full re-solve), and pre-breach weighting leaves the contract alone when it is off."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matchers.clearing import clear
from matchers.incremental import OpenBook, placeable_part
from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.objective import Objective

START = date(2026, 3, 2)
REGIONS = ("01", "03", "13", "25", "09")
AREAS = ("cataract", "cataract", "inguinal-hernia")


@st.composite
def offers(draw: st.DrawFn, i: int, day: date) -> Offer:
    start = day + timedelta(days=draw(st.integers(0, 15)))
    return Offer(f"off-{i}", draw(st.sampled_from(REGIONS)), f"SE-{i}", draw(st.sampled_from(AREAS)),
                 draw(st.integers(1, 3)), start, start + timedelta(days=draw(st.integers(2, 40))),
                 draw(st.sampled_from([8000, 9000, 9000.5, 11000])))


@st.composite
def requests(draw: st.DrawFn, i: int, day: date, offer_ids: list[str]) -> Request:
    patients = tuple(
        Patient(f"case-{i}-{k}", day - timedelta(days=draw(st.integers(0, 300))),
                excluded_offers=frozenset(draw(st.sets(st.sampled_from(offer_ids), max_size=1)))
                if offer_ids else frozenset(),
                breach_date=day + timedelta(days=draw(st.integers(-5, 40))))
        for k in range(draw(st.integers(1, 4))))
    return Request(f"req-{i}", draw(st.sampled_from(REGIONS)), draw(st.sampled_from(AREAS)), day,
                   day + timedelta(days=draw(st.integers(5, 50))),
                   draw(st.sampled_from([None, 10000, 12000])), draw(st.sampled_from([None, 500.0, 1200.0])),
                   tuple(draw(st.sets(st.sampled_from(REGIONS), max_size=1))), draw(st.booleans()), patients)


def _value(allocation) -> tuple[int, int, float]:
    return allocation.placed, allocation.wait_days, allocation.total_cost_sek


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), policy=st.sampled_from(["optimal", "greedy"]), weight=st.sampled_from([0, 0, 3]))
def test_each_round_equals_a_full_resolve_of_the_whole_book(data: st.DataObject, policy: str, weight: int) -> None:
    objective = Objective(breach_weight=weight, breach_horizon_days=20)
    book = OpenBook([Agreement("25", "01", "cataract"), Agreement("09", "13", "inguinal-hernia")])
    day = START
    offer_ids: list[str] = []
    held: list[tuple[str, str, Request]] = []  # (case_ref, offer_id, its request) of placed patients
    for step in range(data.draw(st.integers(3, 12))):
        day += timedelta(days=data.draw(st.integers(0, 6)))
        for _ in range(data.draw(st.integers(0, 2))):
            offer = data.draw(offers(len(offer_ids), day))
            offer_ids.append(offer.offer_id)
            book.add_offer(offer)
        for k in range(data.draw(st.integers(0, 2))):
            book.add_patients(data.draw(requests(step * 10 + k, day, offer_ids)))
        if len(held) > 0 and data.draw(st.booleans()):
            # A released hold: the slot goes back, the patient comes back without that offer.
            case_ref, offer_id, request = held.pop(data.draw(st.integers(0, len(held) - 1)))
            patient = next(p for p in request.patients if p.case_ref == case_ref)
            book.return_slots(offer_id)
            book.add_patients(request, [Patient(case_ref, patient.waiting_since,
                                                patient.excluded_offers | {offer_id}, patient.breach_date)])
        whole = book.scenario(day)
        full = clear(whole, policy, objective)  # type: ignore[arg-type]
        incremental = book.clear(day, policy, objective)  # type: ignore[arg-type]
        assert _value(incremental) == _value(full)
        assert book.last_round.patients <= whole.patient_count
        requests_by_id = {r.request_id: r for r in whole.requests}
        held += [(p.case_ref, p.offer_id, requests_by_id[p.request_id])
                 for p in incremental.placements if p.offer_id is not None]
        # Nothing left on the book can be placed: the invariant the proof rests on.
        assert clear(book.scenario(day), policy).placed == 0  # type: ignore[arg-type]


def test_a_round_reads_only_what_changed() -> None:
    book = OpenBook()
    offer = Offer("off-1", "01", "SE-1", "cataract", 1, START, START + timedelta(days=30), 9000)
    book.add_offer(offer)
    many = Request("req-old", "03", "cataract", START, START + timedelta(days=60), None, None, (), False,
                   tuple(Patient(f"case-{i}", START - timedelta(days=i)) for i in range(50)))
    book.add_patients(many)
    assert book.clear(START).placed == 1
    assert book.last_round.patients == 50
    # A hernia patient cannot take cataract capacity: the 49 cataract patients are not read again.
    hernia = Request("req-new", "03", "inguinal-hernia", START, START + timedelta(days=60), None, None, (), False,
                     (Patient("case-h", START),))
    book.add_patients(hernia)
    allocation = book.clear(START + timedelta(days=1))
    assert (allocation.placed, book.last_round.patients, book.last_round.book_patients) == (0, 1, 50)
    # One slot returned: of the 49 cataract patients who may take it, the round reads the one its
    # class ranks first (the longest waiter left), and places them.
    book.return_slots("off-1")
    allocation = book.clear(START + timedelta(days=2))
    assert book.last_round.patients == 1
    assert [p.case_ref for p in allocation.placements if p.placed] == ["case-48"]


def test_pre_breach_weight_prefers_the_patient_who_can_still_be_saved() -> None:
    offer = Offer("off-1", "01", "SE-1", "cataract", 1, START, START + timedelta(days=30), 9000)
    breached = Patient("case-long", START - timedelta(days=120))  # already past the guarantee
    soon = Patient("case-soon", START - timedelta(days=80), breach_date=START + timedelta(days=10))
    request = Request("req-1", "03", "cataract", START, START + timedelta(days=60), None, None, (), False,
                      (breached, soon))
    book_off, book_on = OpenBook(), OpenBook()
    for book in (book_off, book_on):
        book.add_offer(offer)
        book.add_patients(request)
    contract = book_off.clear(START)
    weighted = book_on.clear(START, objective=Objective(breach_weight=5, breach_horizon_days=30))
    assert [p.case_ref for p in contract.placements if p.placed] == ["case-long"]
    assert [p.case_ref for p in weighted.placements if p.placed] == ["case-soon"]


# --- the live matcher's continuous round: `placeable_part` of the stored book ---------------------


@dataclass
class _Stored:
    """The book as the database holds it between continuous rounds: offers with the slots still
    free, the cases on the book with their request, and which cases no round has read yet."""

    offers: dict[str, Offer] = field(default_factory=dict)
    cases: dict[str, tuple[Request, Patient]] = field(default_factory=dict)
    fresh: set[str] = field(default_factory=set)

    def whole(self, day: date, agreements: tuple[Agreement, ...]) -> Scenario:
        by_request: dict[str, list[Patient]] = {}
        terms: dict[str, Request] = {}
        for request, patient in self.cases.values():
            by_request.setdefault(request.request_id, []).append(patient)
            terms[request.request_id] = request
        requests = tuple(replace(terms[r], patients=tuple(sorted(ps, key=lambda p: p.case_ref)))
                         for r, ps in sorted(by_request.items()))
        offers = tuple(o for _, o in sorted(self.offers.items()) if o.capacity > 0)
        return Scenario("stored", day, agreements, offers, requests)


AGREEMENTS = (Agreement("25", "01", "cataract"), Agreement("09", "13", "inguinal-hernia"))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), policy=st.sampled_from(["optimal", "greedy"]))
def test_a_continuous_round_of_the_placeable_part_equals_a_full_resolve(data: st.DataObject, policy: str) -> None:
    """Random sequences of what happens to a live book (offers published, patients published,
    holds released: the slot back and the patient back without that offer, offers withdrawn,
    patients withdrawn, days passing so offers and requests expire); after each, a round of the
    placeable part has the value of a full re-solve of the whole book, and a patient it leaves
    out is placed by no allocation."""
    stored = _Stored()
    day = START
    offer_ids: list[str] = []
    held: list[tuple[Request, Patient, str]] = []
    for step in range(data.draw(st.integers(3, 12))):
        day += timedelta(days=data.draw(st.integers(0, 8)))
        for _ in range(data.draw(st.integers(0, 2))):
            offer = data.draw(offers(len(offer_ids), day))
            offer_ids.append(offer.offer_id)
            stored.offers[offer.offer_id] = offer
        for k in range(data.draw(st.integers(0, 3))):
            request = data.draw(requests(step * 10 + k, day, offer_ids))
            for patient in request.patients:
                stored.cases[patient.case_ref] = (request, patient)
                stored.fresh.add(patient.case_ref)
        if len(held) > 0 and data.draw(st.booleans()):
            request, patient, offer_id = held.pop(data.draw(st.integers(0, len(held) - 1)))
            offer = stored.offers[offer_id]
            stored.offers[offer_id] = replace(offer, capacity=offer.capacity + 1)
            back = replace(patient, excluded_offers=patient.excluded_offers | {offer_id})
            stored.cases[patient.case_ref] = (request, back)
            stored.fresh.add(patient.case_ref)
        if stored.offers and data.draw(st.integers(0, 4)) == 0:
            gone = data.draw(st.sampled_from(sorted(stored.offers)))
            stored.offers[gone] = replace(stored.offers[gone], capacity=0)
        if stored.cases and data.draw(st.integers(0, 4)) == 0:
            gone = data.draw(st.sampled_from(sorted(stored.cases)))
            del stored.cases[gone]
            stored.fresh.discard(gone)

        whole = stored.whole(day, AGREEMENTS)
        part = placeable_part(whole, stored.fresh)
        full = clear(whole, policy)  # type: ignore[arg-type]
        incremental = clear(part, policy)  # type: ignore[arg-type]
        assert _value(incremental) == _value(full)
        left_out = {p.case_ref for r in whole.requests for p in r.patients} - {
            p.case_ref for r in part.requests for p in r.patients}
        assert not left_out & {p.case_ref for p in full.placements if p.placed}

        # The round's write: placed cases leave the book and take their slot; every case it read is
        # no longer fresh (its reason is recorded).
        by_ref = {p.case_ref: (r, p) for r in part.requests for p in r.patients}
        for placement in incremental.placements:
            stored.fresh.discard(placement.case_ref)
            if placement.offer_id is None:
                continue
            request, patient = by_ref[placement.case_ref]
            del stored.cases[placement.case_ref]
            offer = stored.offers[placement.offer_id]
            stored.offers[placement.offer_id] = replace(offer, capacity=offer.capacity - 1)
            held.append((request, patient, placement.offer_id))
        # Nothing nobody changed can be placed: the next round's part holds only fresh patients.
        assert placeable_part(stored.whole(day, AGREEMENTS)).patient_count == 0


def test_patients_nothing_can_place_are_left_out_of_the_round() -> None:
    offer = Offer("off-1", "01", "SE-1", "cataract", 1, START, START + timedelta(days=30), 9000)
    cheap = Request("req-cheap", "03", "cataract", START, START + timedelta(days=60), 1, None, (), False,
                    tuple(Patient(f"case-{i}", START - timedelta(days=i)) for i in range(500)))
    new = Request("req-new", "03", "cataract", START, START + timedelta(days=60), None, None, (), False,
                  (Patient("case-new", START),))
    whole = Scenario("book", START, (), (offer,), (cheap, new))
    part = placeable_part(whole)
    assert [p.case_ref for r in part.requests for p in r.patients] == ["case-new"]
    assert _value(clear(part)) == _value(clear(whole))
    assert clear(part).placed == 1
    # A fresh patient is read even when nothing can place them: the round records why.
    assert placeable_part(whole, {"case-0"}).patient_count == 2
