"""A running marketplace's recorded log as a stream: what `nvf demo` (or any deployment) leaves
in its database, ready to replay under the policy it ran with or under another.

Read from the store, never changed: offers (as published, full capacity) and requests with their
patients at the moment intake stored them, the agreements, the clearing rounds that ran (care
area, as-of day, policy) and the parties' answers from the case timelines (a provider's or
patient's accept or decline of a proposed slot; a lapsed hold is `none`).

The recording's clock is the servers' wall clock, while the market's days are the rounds' as-of
days (a demo runs a spring 2026 campaign today). The stream keeps the order and spacing of what
happened and moves it so that the first round falls on its as-of day: the replay's rounds then
see the same book on the same day. The stream ends on the last recorded day: an answer the log
does not have had not been given when it was read, and the replay's drawn answers (a day or more
after a proposal) fall after the end.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlmodel import col, select

from marketplace.adapters.database import Database
from marketplace.adapters.orm import (
    AgreementRow,
    CaseEventRow,
    CaseRow,
    ClearingRoundRow,
    MatchRow,
    OfferRow,
    RequestRow,
)
from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date
from marketplace.replay.stream import (
    MAX_DAYS,
    Behaviour,
    OfferArrival,
    RecordedAnswer,
    RecordedRound,
    RequestArrival,
    Stream,
    StreamEvent,
    day_start,
)
from matchers.model import Agreement, Offer, Patient, Request

_ANSWERS = {
    "case.provider_accepted_match": ("provider", "accept"),
    "case.provider_declined_match": ("provider", "decline"),
    "case.patient_accepted_offer": ("patient", "accept"),
    "case.patient_declined_offer": ("patient", "decline"),
}


class NothingRecorded(ValueError):
    """The store holds no clearing round: there is nothing to replay."""


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was stored in UTC.
    from datetime import UTC

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def record_from_database(db: Database, name: str = "recorded marketplace log") -> Stream:
    async with db.session() as session:
        try:
            rounds = (await session.exec(select(ClearingRoundRow).order_by(col(ClearingRoundRow.completed_at),
                                                                           col(ClearingRoundRow.round_id)))).all()
        except (OperationalError, ProgrammingError) as exc:
            # Reading never creates anything: a store without tables has recorded nothing.
            raise NothingRecorded("the marketplace's store has no clearing round yet (it has no tables): "
                                  "run `nvf demo` or `nvf run` and publish first") from exc
        if not rounds:
            raise NothingRecorded("the marketplace's store has no clearing round yet: run `nvf demo` or publish first")
        offers = (await session.exec(select(OfferRow).order_by(col(OfferRow.created_at), col(OfferRow.offer_id)))).all()
        requests = (await session.exec(select(RequestRow).order_by(col(RequestRow.created_at),
                                                                   col(RequestRow.request_id)))).all()
        cases = (await session.exec(select(CaseRow).order_by(col(CaseRow.case_ref)))).all()
        agreements = (await session.exec(select(AgreementRow))).all()
        match_offer = dict((await session.exec(select(MatchRow.match_id, MatchRow.offer_id))).all())
        answered = (await session.exec(
            select(CaseEventRow).where(col(CaseEventRow.event_type).in_([*_ANSWERS, "case.hold_expired"]))
            .order_by(col(CaseEventRow.occurred_at), col(CaseEventRow.case_ref), col(CaseEventRow.version)))).all()

    first_day = min(r.as_of for r in rounds)
    moments = [_aware(o.created_at) for o in offers] + [_aware(r.created_at) for r in requests]
    origin = min(moments) if moments else _aware(rounds[0].completed_at)
    shift = day_start(first_day, 8) - origin

    def moved(moment: datetime) -> datetime:
        return (_aware(moment) + shift).astimezone(SWEDISH_TIME)

    patients: dict[str, list[Patient]] = defaultdict(list)
    for c in cases:
        patients[c.request_id].append(Patient(c.case_ref, c.waiting_since))
    events: list[StreamEvent] = []
    for o in offers:
        events.append(OfferArrival(moved(o.created_at), Offer(o.offer_id, o.region, o.unit_hsa_id, o.care_area,
                                                              o.capacity, o.window_start, o.window_end, o.price_sek)))
    for r in requests:
        events.append(RequestArrival(moved(r.created_at), Request(
            r.request_id, r.region, r.care_area, r.window_start, r.window_end, r.max_price_sek, r.max_travel_km,
            tuple(r.excluded_regions), r.requires_agreement, tuple(patients.get(r.request_id, ())))))
    for rnd in rounds:
        events.append(RecordedRound(moved(rnd.completed_at), rnd.care_area, rnd.as_of, rnd.policy))
    answers: dict[tuple[str, str, str], RecordedAnswer] = {}
    for entry in answered:
        match_id = str(entry.payload.get("match_id", ""))
        offer_id = match_offer.get(match_id) or str(entry.payload.get("offer_id", ""))
        if entry.event_type == "case.hold_expired":
            phase = str(entry.payload.get("phase", "provider_answer"))
            party, answer = ("provider" if phase.startswith("provider") else "patient"), "none"
        else:
            party, answer = _ANSWERS[entry.event_type]
        recorded = RecordedAnswer(moved(entry.occurred_at), entry.case_ref, offer_id, party, answer)  # type: ignore[arg-type]
        answers[entry.case_ref, offer_id, party] = recorded
        events.append(recorded)
    events.sort(key=lambda e: e.at)
    end = max(swedish_date(e.at) for e in events)
    end = min(end, first_day + timedelta(days=MAX_DAYS))
    # Answers the log does not have come after its end (see the module docstring).
    behaviour = Behaviour(provider_answer_hours=(24.0, 40.0), patient_answer_hours=(24.0, 100.0))
    return Stream(name, 0, first_day, end, behaviour,
                  tuple(Agreement(a.purchaser, a.provider, area)
                        for a in agreements if a.status != "draft" for area in a.care_areas), tuple(events), answers)
