"""Incremental clearing: a continuous market's rounds look only at what changed since the last.

`OpenBook` keeps the whole open book between rounds: offers with the capacity still free, and
the patients still waiting, per request. It remembers what changed since its last round:

- *dirty offers*: an offer published, or capacity returned to one (a released hold);
- *dirty patients*: patients published, or put back on the book (with the offer that failed them
  excluded, so they form a request class of their own).

A round (`OpenBook.clear`) solves only the *relevant* part of the book: the dirty patients, and
every patient on the book that may take a dirty offer (rules 1-7, the offer not excluded for
them), with every offer those patients may take that has room. It commits what it decides: the
placed patients leave the book and their slots are taken.

Why the result is exactly the optimum of the whole book (for `optimal`; and exactly what
`greedy` would decide on the whole book, for `greedy`):

*Invariant.* After every round, no patient left on the book may take an offer with room.
For the round's own patients under `optimal`: the round's allocation is a maximum flow of the
round's book, and a patient of it left unplaced next to an offer with room that they may take
would be an augmenting path. The book's pruning of dear offers (`matchers.book`) does not break
this: a class keeps enough of its cheapest offers to hold every patient of the round, so if it
has patients left unplaced, one of its kept offers has room, again an augmenting path. Under
`greedy` a patient is left unplaced only when every offer they may take is full at their turn,
and offers only fill up during a round. For the patients the round did not read, see the step.

*Step.* Between two rounds the book changes only by the events above, and by what makes it
smaller: time passing (offers and requests expire: rule 2 only ever removes pairs, no rule
depends on the date otherwise), withdrawals, patients leaving. Take a patient `p` on the book at
the next round who is not relevant. `p` is not dirty, so `p` was on the book after the last round
with the same exclusions, and by the invariant every offer `p` could take then was full. Since
then no such offer got room back (it would be dirty, and `p` may take it, so `p` would be
relevant) and no new offer `p` may take was published (same). So every offer `p` may take is
full: `p` is placed by no allocation of the whole book. The whole book's feasible allocations are
therefore exactly the round's (the relevant patients carry all offers they may take that have
room), with the same placements, wait days and cost, so the optimum (or the greedy outcome:
a patient with nothing to take never changes what anybody else gets) is the same. The round
leaves the invariant true again, and the first round (everything dirty) starts it.

*Ranked per changed offer* (the contract's objective, and greedy: every priority is the wait
days). Patients who did not change may take only changed offers with room, so at most S of them
are placed, S the free slots of the changed offers of their care area. For each changed offer
`o` the round reads the unchanged patients who may take `o`, longest waiter first (the book keeps
each care area's patients in that order, so this stops early), S of them and every one waiting
as long as the last. An unchanged patient `a` it leaves out is placed by no optimum: were `a` on
`o`, of the patients read for `o` (at least S, each waiting strictly longer than `a`) at most
S - 1 are placed, and moving `o`'s slot from `a` to one left unplaced places as many and more
wait days. Nor by greedy, which serves longest waiters first: for each offer `o` that `a` may
take, the S read for it come before `a`; if one of them was left unplaced, `o` was full at their
turn, else all S were placed on changed slots and took all of them; either way `o` is full at
`a`'s turn. The round leaves the invariant true: an offer with room
after it would have been given to one of its readers left unplaced.

*Ranked within a class* (with the pre-breach weight, the order of priority changes with the
day). A patient who did not change may take only changed offers, so a request class (one
request, one set of excluded offers) can place at most the free slots of the changed offers it
may take. Its patients may all take the same offers at the same cost, so swapping a placed
patient for a higher-ranked unplaced one of the class keeps an allocation feasible and its cost,
and does not lower objective 2: some optimum places only the class's first-ranked patients
(rank: priority, then case_ref), and the round reads only those, as many as the slots.

So a round costs what the change touches: a new patient is solved against the few offers with
room, and patients nothing new can place are never read. `tests/matchers/test_incremental.py`
checks this against a full re-solve of the whole book with Hypothesis.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import date

from matchers.allocation import Allocation
from matchers.clearing import Policy, clear
from matchers.feasibility import failing_rule
from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.objective import CONTRACT, Objective


@dataclass
class _OpenRequest:
    request: Request  # its `patients` are not used: the book's own dict below is the truth
    patients: dict[str, Patient]


@dataclass(frozen=True, slots=True)
class RoundSize:
    """How much of the book one round read (for progress and benchmarks)."""

    patients: int
    offers: int
    book_patients: int


class OpenBook:
    """The open book of a market between clearing rounds (pure: no I/O, no clock)."""

    def __init__(self, agreements: Iterable[Agreement] = (), name: str = "open-book") -> None:
        self.name = name
        self.agreements = tuple(agreements)
        self._agreement_set = frozenset(self.agreements)
        self.offers: dict[str, Offer] = {}  # capacity = slots still free
        self.requests: dict[str, _OpenRequest] = {}
        self._request_of: dict[str, str] = {}  # case_ref -> request_id, patients on the book
        self._by_area: dict[str, set[str]] = defaultdict(set)  # care area -> request ids with patients
        # Per care area, the patients on the book longest waiter first: (waiting_since, case_ref).
        self._queue: dict[str, list[tuple[date, str]]] = defaultdict(list)
        self._open: dict[str, set[str]] = defaultdict(set)  # care area -> offer ids with room
        self._pruned_until = date.min
        self._dirty_offers: set[str] = set()
        self._dirty_patients: set[str] = set()
        self.last_round = RoundSize(0, 0, 0)
        self._pairs: dict[tuple[str, str], bool] = {}

    # --- changes ------------------------------------------------------------------------------

    def add_offer(self, offer: Offer) -> None:
        if offer.offer_id in self.offers:
            raise ValueError(f"offer {offer.offer_id!r} is already on the book")
        if offer.capacity < 0:
            raise ValueError(f"offer {offer.offer_id!r}: capacity must not be negative")
        self.offers[offer.offer_id] = offer
        self._dirty_offers.add(offer.offer_id)
        self._set_room(offer)

    def _set_room(self, offer: Offer) -> None:
        if offer.capacity > 0:
            self._open[offer.care_area].add(offer.offer_id)
        else:
            self._open[offer.care_area].discard(offer.offer_id)

    def return_slots(self, offer_id: str, slots: int = 1) -> None:
        """A released hold gives its slot back to the offer."""
        offer = self.offers[offer_id]
        self.offers[offer_id] = replace(offer, capacity=offer.capacity + slots)
        self._dirty_offers.add(offer_id)
        self._set_room(self.offers[offer_id])

    def withdraw_offer(self, offer_id: str) -> int:
        """The providing region takes back the capacity still free; returns how many slots."""
        offer = self.offers[offer_id]
        self.offers[offer_id] = replace(offer, capacity=0)
        self._set_room(self.offers[offer_id])
        return offer.capacity

    def add_patients(self, request: Request, patients: Iterable[Patient] | None = None) -> None:
        """Put patients of `request` on the book (default: its own); a request already open
        (a patient coming back after a release) keeps its terms."""
        entry = self.requests.get(request.request_id)
        if entry is None:
            entry = self.requests[request.request_id] = _OpenRequest(replace(request, patients=()), {})
        for p in request.patients if patients is None else patients:
            if p.case_ref in self._request_of:
                raise ValueError(f"patient {p.case_ref!r} is already on the book")
            entry.patients[p.case_ref] = p
            self._request_of[p.case_ref] = request.request_id
            bisect.insort(self._queue[entry.request.care_area], (p.waiting_since, p.case_ref))
            self._dirty_patients.add(p.case_ref)
        if entry.patients:
            self._by_area[entry.request.care_area].add(request.request_id)

    def remove_patient(self, case_ref: str) -> bool:
        """The patient leaves the book (withdrawn, expired); False when not on it."""
        request_id = self._request_of.pop(case_ref, None)
        if request_id is None:
            return False
        entry = self.requests[request_id]
        patient = entry.patients.pop(case_ref)
        queue = self._queue[entry.request.care_area]
        del queue[bisect.bisect_left(queue, (patient.waiting_since, case_ref))]
        if not entry.patients:
            self._by_area[entry.request.care_area].discard(request_id)
        self._dirty_patients.discard(case_ref)
        return True

    def touch_all(self) -> None:
        """Mark the whole book changed: the next round is a full re-solve (for comparison)."""
        self._dirty_offers.update(self.offers)
        self._dirty_patients.update(self._request_of)

    def on_book(self, case_ref: str) -> bool:
        return case_ref in self._request_of

    @property
    def patient_count(self) -> int:
        return len(self._request_of)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_offers or self._dirty_patients)

    # --- rounds -------------------------------------------------------------------------------

    def scenario(self, as_of: date) -> Scenario:
        """The whole open book as one scenario (what a full re-solve would read)."""
        requests = tuple(replace(e.request, patients=tuple(e.patients[c] for c in sorted(e.patients)))
                         for _, e in sorted(self.requests.items()) if e.patients)
        offers = tuple(o for _, o in sorted(self.offers.items()) if o.capacity > 0 and o.window_end >= as_of)
        return Scenario(self.name, as_of, self.agreements, offers, requests)

    def relevant(self, as_of: date, care_areas: Collection[str] | None = None, policy: Policy = "optimal",
                 objective: Objective = CONTRACT) -> Scenario:
        """The part of the book a round must solve (see the module docstring), optionally of some
        care areas only (areas never share an offer, so each is a book of its own)."""
        chosen: dict[str, set[str]] = defaultdict(set)
        for case_ref in self._dirty_patients:
            request_id = self._request_of[case_ref]
            if care_areas is None or self.requests[request_id].request.care_area in care_areas:
                chosen[request_id].add(case_ref)
        if policy == "greedy" or objective.is_contract:
            self._ranked_by_offer(as_of, care_areas, chosen)
        else:
            self._ranked_by_class(as_of, care_areas, policy, objective, chosen)
        requests = []
        areas: set[str] = set()
        for request_id in sorted(chosen):
            entry = self.requests[request_id]
            if chosen[request_id]:
                requests.append(replace(entry.request,
                                        patients=tuple(entry.patients[c] for c in sorted(chosen[request_id]))))
                areas.add(entry.request.care_area)
        return Scenario(self.name, as_of, self.agreements, self._with_room(as_of, areas), tuple(requests))

    def _with_room(self, as_of: date, areas: Collection[str]) -> tuple[Offer, ...]:
        """The offers of `areas` with room on `as_of`, by offer id. Offers that expired are
        dropped from the index once the rounds' day passes them (rounds go forward in time; a
        round on an earlier day reads every offer instead)."""
        if as_of < self._pruned_until:
            return tuple(o for _, o in sorted(self.offers.items())
                         if o.capacity > 0 and o.window_end >= as_of and o.care_area in areas)
        self._pruned_until = as_of
        kept: list[Offer] = []
        for area in areas:
            expired = [o for o in self._open[area] if self.offers[o].window_end < as_of]
            self._open[area].difference_update(expired)
            kept += (self.offers[o] for o in self._open[area])
        return tuple(sorted(kept, key=lambda o: o.offer_id))

    def _ranked_by_offer(self, as_of: date, care_areas: Collection[str] | None,
                         chosen: dict[str, set[str]]) -> None:
        """Unchanged patients who may be placed when every priority is the wait days (the
        contract, and greedy's order): per changed offer with room, those who may take it,
        longest waiter first, as many as the changed offers' free slots of its care area, and
        everyone waiting as long as the last of them (see the module docstring)."""
        dirty = [o for o in self._dirty(care_areas) if o.capacity > 0 and o.window_end >= as_of]
        slots: dict[str, int] = defaultdict(int)
        for offer in dirty:
            slots[offer.care_area] += offer.capacity
        for offer in dirty:
            budget, found, last = slots[offer.care_area], 0, -1
            for _, case_ref in self._queue[offer.care_area]:
                if case_ref in self._dirty_patients:
                    continue
                request_id = self._request_of[case_ref]
                entry = self.requests[request_id]
                patient = entry.patients[case_ref]
                wait = patient.wait_days(as_of)
                if found >= budget and wait != last:
                    break  # the queue is longest waiter first: nobody further on ranks as high
                if offer.offer_id in patient.excluded_offers or not self._may_take(entry.request, offer, as_of):
                    continue
                chosen[request_id].add(case_ref)
                found, last = found + 1, wait

    def _ranked_by_class(self, as_of: date, care_areas: Collection[str] | None, policy: Policy,
                         objective: Objective, chosen: dict[str, set[str]]) -> None:
        """Unchanged patients who may be placed when the priority also weighs days to breach
        (the order of waiting changes with the day): per request class, as many of its first
        ranked as the free slots of the changed offers it may take."""
        # Patients who did not change may take only the changed offers (the invariant); per
        # request class, at most the free slots of those offers it may take can be placed.
        room: dict[tuple[str, frozenset[str]], int] = defaultdict(int)
        for offer in self._dirty(care_areas):
            if offer.capacity <= 0 or offer.window_end < as_of:
                continue
            for request_id in self._by_area.get(offer.care_area, ()):
                entry = self.requests[request_id]
                if not self._may_take(entry.request, offer, as_of):
                    continue
                for excluded in {p.excluded_offers for p in entry.patients.values()}:
                    if offer.offer_id not in excluded:
                        room[request_id, excluded] += offer.capacity
        for (request_id, excluded), slots in sorted(room.items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
            unchanged = [p for c, p in self.requests[request_id].patients.items()
                         if p.excluded_offers == excluded and c not in self._dirty_patients]
            if len(unchanged) > slots:
                # Within a class every patient may take the same offers at the same cost, so a round
                # that places k of them may as well place the k it ranks first: the rest are left out.
                if policy == "greedy":
                    unchanged.sort(key=lambda p: (-p.wait_days(as_of), p.case_ref))
                else:
                    unchanged.sort(key=lambda p: (-objective.priority(p, as_of), p.case_ref))
                unchanged = unchanged[:slots]
            chosen[request_id].update(p.case_ref for p in unchanged)

    def _may_take(self, request: Request, offer: Offer, as_of: date) -> bool:
        # Rules 1 and 3-7 never change for a pair; rule 2 (expiry) is the only one that depends on
        # the day, so the rules are asked once per pair on a day nothing has expired, and expiry
        # on the day itself.
        if offer.window_end < as_of or request.window_end < as_of:
            return False
        key = (request.request_id, offer.offer_id)
        found = self._pairs.get(key)
        if found is None:
            found = self._pairs[key] = failing_rule(request, offer, date.min, self._agreement_set) is None
        return found

    def _dirty(self, care_areas: Collection[str] | None) -> list[Offer]:
        offers = (self.offers[o] for o in sorted(self._dirty_offers))
        return [o for o in offers if care_areas is None or o.care_area in care_areas]

    def clear(self, as_of: date, policy: Policy = "optimal", objective: Objective = CONTRACT,
              care_areas: Collection[str] | None = None) -> Allocation:
        """One round on the relevant part of the book (of `care_areas`, default all); the placed
        patients leave the book and their slots are taken. The allocation lists the round's
        patients only: nobody else on the book could be placed by any allocation."""
        sub = self.relevant(as_of, care_areas, policy, objective)
        allocation = clear(sub, policy, objective) if sub.requests else Allocation((), policy)
        self.last_round = RoundSize(sub.patient_count, len(sub.offers), self.patient_count)
        for p in allocation.placements:
            if p.offer_id is None:
                continue
            self.remove_patient(p.case_ref)
            offer = self.offers[p.offer_id]
            self.offers[p.offer_id] = replace(offer, capacity=offer.capacity - 1)
            self._set_room(self.offers[p.offer_id])
        if care_areas is None:
            self._dirty_offers.clear()
            self._dirty_patients.clear()
        else:
            self._dirty_offers -= {o.offer_id for o in self._dirty(care_areas)}
            self._dirty_patients -= {c for c in self._dirty_patients
                                     if self.requests[self._request_of[c]].request.care_area in care_areas}
        return allocation


def placeable_part(scenario: Scenario, fresh: Collection[str] = ()) -> Scenario:
    """The part of a book a continuous round must solve: every offer with room, and the patients
    who may take at least one of them (rules 1-7, the offer not excluded for the patient), plus
    the `fresh` patients (new on the book: their round records why they were not placed).

    Exact, whatever the book: a patient who may take no offer with room is placed by no
    allocation of the whole book, so the whole book's feasible allocations are this part's (the
    others left unplaced), with the same placements, wait days, cost and priorities: the optimum
    (and greedy's outcome, which never gives a patient an offer they may not take) is the same.

    Cheap once the book is cleared: after a round of this part no patient left on the book may
    take an offer with room (an optimal round places as many as can be placed, so one of them
    left unplaced beside an offer they may take would be an augmenting path; see `OpenBook`).
    Until something changes (an offer published, a slot given back, a patient put on the book),
    the offers with room are only those nobody on the book may take, and this part is empty of
    all but fresh patients, however many patients wait on the book for nothing.
    """
    as_of, agreements = scenario.as_of, scenario.agreement_set
    offers = [o for o in scenario.offers if o.capacity > 0 and o.window_end >= as_of]
    requests = []
    for request in scenario.requests:
        usable = [o.offer_id for o in offers if failing_rule(request, o, as_of, agreements) is None]
        patients = tuple(p for p in request.patients
                         if p.case_ref in fresh or any(o not in p.excluded_offers for o in usable))
        if patients:
            requests.append(replace(request, patients=patients))
    # Every offer stays: those without room cost the solver nothing, and the reasons the fresh
    # patients are given are the ones a round of the whole book would give.
    return replace(scenario, requests=tuple(requests))
