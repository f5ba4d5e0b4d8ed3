"""Intake: what regions publish is validated, stored and put on its care area's book.

Each item is checked completely before anything of it is written, so a refused item leaves
nothing behind; the whole batch commits in one transaction with the inbox and the outbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import (
    AgreementDrafted,
    AgreementEnded,
    AgreementRegistered,
    AgreementUpdated,
    CaseCommandIssued,
    ClearingRoundRequested,
    Envelope,
    EventParseError,
    OfferPublished,
    OfferWithdrawn,
    Payload,
    RequestPublished,
    RequestWithdrawn,
    Streams,
)
from events.envelope import parse_envelope, stable_event_id
from events.parties import CLEARING_REQUESTERS
from marketplace.adapters.appends import append
from marketplace.adapters.inbox import processed_digests, record_processed
from marketplace.adapters.orm import AgreementRow, CaseRow, OfferRow, OutboxRow, RequestRow
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import Command, IdentifyNeed, PlaceOnBook, Withdraw, allowed_commands
from marketplace.lifecycle.reasons import WithdrawalReason
from marketplace.services import agreements, case_commands
from marketplace.services.context import ServiceContext
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.refusals import Refused, reject
from matchers.reference import care_areas
from matchers.validation import Violation, check_agreement, check_offer, check_request

CONSUMER = "intake"
# New offers and requests are inserted in bulk at the commit (marketplace/adapters/appends.py).
OFFERS = OfferRow.__table__  # type: ignore[attr-defined]
REQUESTS = RequestRow.__table__  # type: ignore[attr-defined]
AGREEMENT_EVENTS = (AgreementDrafted, AgreementRegistered, AgreementUpdated, AgreementEnded)
log = structlog.get_logger(__name__)



@dataclass
class IntakeResult:
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    touched_care_areas: set[str] = field(default_factory=set)


async def handle_batch(session: AsyncSession, items: Sequence[Any], ctx: ServiceContext) -> IntakeResult:
    return await handle_parts(session, [(items, ctx)])


async def handle_parts(session: AsyncSession, parts: Sequence[tuple[Sequence[Any], ServiceContext]]) -> IntakeResult:
    """The batches of several parties' ingress streams (each with its channel in its context) in one
    pass: one read per table for all of them, and each refusal told to the channel its entry came on."""
    result = IntakeResult()
    if not parts:
        return result
    ctx = parts[0][1]
    streams = ctx.streams
    parsed: list[tuple[Envelope, Payload, str | None]] = []
    for items, part in parts:
        for raw in items:
            try:
                parsed.append((*parse_envelope(raw), part.channel))
            except EventParseError as exc:
                reject(session, streams, field=exc.field, rule=exc.rule, message=exc.message,
                       event_id=exc.event_id, event_type=exc.event_type, producer=exc.producer,
                       recipient=part.channel)
                result.rejected += 1
    seen = await processed_digests(session, CONSUMER, (str(env.event_id) for env, _, _ in parsed))
    ledger = CaseLedger(session, ctx)
    known = await _Known.read(session, ledger, [p for env, p, _ in parsed if str(env.event_id) not in seen])
    for envelope, payload, channel in parsed:
        eid = str(envelope.event_id)
        try:
            digest = envelope.digest()
        except EventParseError as exc:
            reject(session, streams, field=exc.field, rule=exc.rule, message=exc.message, event_id=eid,
                   event_type=envelope.type, producer=envelope.producer)
            result.rejected += 1
            continue
        if eid in seen:
            if seen[eid] not in (None, digest) and not await _conflict_told(session, eid, digest):
                # Not a redelivery: other content under an id already used. Refused, not dropped
                # (and told once, however often that other content is delivered again).
                reject(session, streams, field="event_id", rule="event_id_reused",
                       message="this event_id was already used for other content; use a new event_id",
                       event_id=eid, event_type=envelope.type, producer=envelope.producer, distinct=digest)
                result.rejected += 1
            else:
                result.duplicates += 1
            continue
        seen[eid] = digest
        structlog.contextvars.bind_contextvars(event_id=eid, correlation_id=envelope.correlation_id)
        care_area: str | None
        try:
            if isinstance(payload, OfferPublished | RequestPublished):
                # Everything these need was read above: nothing is flushed until the commit.
                with session.no_autoflush:
                    care_area = await _publish(session, ledger, known, envelope, payload, streams)
            else:
                care_area = await _apply(session, ledger, known, envelope, payload, streams)
        except Refused as exc:
            reject(session, streams, field=exc.field, rule=exc.rule, message=exc.message, event_id=eid,
                   event_type=envelope.type, producer=envelope.producer,
                   correlation_id=envelope.correlation_id, recipient=channel)
            result.rejected += 1
        else:
            result.accepted += 1
            if care_area:
                result.touched_care_areas.add(care_area)
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "correlation_id")
        record_processed(session, CONSUMER, eid, digest)
    log.info("intake.batch", received=sum(len(items) for items, _ in parts), parties=len(parts),
             accepted=result.accepted, rejected=result.rejected, duplicates=result.duplicates)
    return result


async def _conflict_told(session: AsyncSession, event_id: str, digest: str) -> bool:
    told = stable_event_id("rejected", event_id, "event_id", "event_id_reused", digest)
    query = select(OutboxRow.event_id).where(OutboxRow.event_id == str(told))
    return (await session.exec(query)).first() is not None


@dataclass
class _Known:
    """What a batch's items need from the store, read once for the whole batch with one query per
    table: which of the ids it publishes exist already (the batch's own accepted items are added as
    it goes, so a repeat within the batch is caught too), and the rows its withdrawals, case
    commands and agreement changes act on. An item whose row the batch itself created is not here
    and is read when its turn comes (the rows appended so far are written before that read)."""

    offers: set[str]
    requests: set[str]
    cases: set[str]
    offer_rows: dict[str, OfferRow] = field(default_factory=dict)
    request_rows: dict[str, RequestRow] = field(default_factory=dict)
    request_cases: dict[str, list[CaseRow]] = field(default_factory=dict)
    # Held so that the session's identity map keeps them (it holds rows weakly) until their item.
    agreement_rows: list[AgreementRow] = field(default_factory=list)

    @classmethod
    async def read(cls, session: AsyncSession, ledger: CaseLedger, payloads: Sequence[Payload]) -> _Known:
        offer_ids = [p.offer_id for p in payloads if isinstance(p, OfferPublished)]
        requests = [p for p in payloads if isinstance(p, RequestPublished)]
        request_ids = [r.request_id for r in requests]
        refs = [patient.case_ref for r in requests for patient in r.patients]
        withdrawn_offers = sorted({p.offer_id for p in payloads if isinstance(p, OfferWithdrawn)})
        withdrawn_requests = sorted({p.request_id for p in payloads if isinstance(p, RequestWithdrawn)})
        agreement_ids = sorted({agreements.agreement_id_of(p) for p in payloads if isinstance(p, AGREEMENT_EVENTS)
                                and _names_its_agreement(p)})
        known = cls(
            offers=set((await session.exec(select(OfferRow.offer_id).where(
                col(OfferRow.offer_id).in_(offer_ids)))).all()) if offer_ids else set(),
            requests=set((await session.exec(select(RequestRow.request_id).where(
                col(RequestRow.request_id).in_(request_ids)))).all()) if request_ids else set(),
            cases=set(),
        )
        if withdrawn_offers:
            known.offer_rows = {o.offer_id: o for o in (await session.exec(select(OfferRow).where(
                col(OfferRow.offer_id).in_(withdrawn_offers)))).all()}
        if withdrawn_requests:
            known.request_rows = {r.request_id: r for r in (await session.exec(select(RequestRow).where(
                col(RequestRow.request_id).in_(withdrawn_requests)))).all()}
            for case in (await session.exec(select(CaseRow).where(
                    col(CaseRow.request_id).in_(list(known.request_rows))))).all() if known.request_rows else ():
                known.request_cases.setdefault(case.request_id, []).append(case)
            ledger.adopt(c for cases in known.request_cases.values() for c in cases)
        if agreement_ids:
            known.agreement_rows = list((await session.exec(select(AgreementRow).where(
                col(AgreementRow.agreement_id).in_(agreement_ids)))).all())
        commanded = [p.case_ref for p in payloads if isinstance(p, CaseCommandIssued)]
        withdrawing = [c.case_ref for cases in known.request_cases.values() for c in cases]
        # Their timelines and snapshots in one read: which cases exist, and the states commands act on.
        await ledger.load([*refs, *commanded, *withdrawing])
        known.cases = {ref for ref in refs if ref in ledger.rows}
        return known


def _names_its_agreement(payload: agreements.AgreementEvent) -> bool:
    # The older registration names its agreement by purchaser, provider and care area; one that
    # lacks them is refused at its turn, with the field it lacks.
    return payload.agreement_id is not None or (
        isinstance(payload, AgreementRegistered) and bool(payload.provider and payload.care_area))


async def _publish(session: AsyncSession, ledger: CaseLedger, known: _Known, envelope: Envelope,
                   payload: OfferPublished | RequestPublished, streams: Streams) -> str:
    if isinstance(payload, OfferPublished):
        _accept_offer(session, known, envelope, payload)
    else:
        await _accept_request(session, ledger, known, envelope, payload)
    stage(session, _forwarded(envelope), streams.book(payload.care_area))
    return payload.care_area


def _forwarded(envelope: Envelope) -> Envelope:
    # On the book the producer is intake, the partition's only writer (events/parties.py); whose
    # item it is stays in the payload, which intake has checked against the sender's channel.
    return envelope.model_copy(update={"producer": CONSUMER})


async def _apply(session: AsyncSession, ledger: CaseLedger, known: _Known, envelope: Envelope,
                 payload: Payload, streams: Streams) -> str | None:
    """Check one item completely, then store it; returns the care area whose book it touched."""
    match payload:
        case CaseCommandIssued():
            await case_commands.apply(ledger, envelope, payload)
            return None
        case OfferWithdrawn():
            return await _withdraw_offer(session, known, envelope, payload, streams)
        case RequestWithdrawn():
            return await _withdraw_request(session, ledger, known, envelope, payload)
        case AgreementDrafted() | AgreementRegistered() | AgreementUpdated() | AgreementEnded():
            await _agreement(session, envelope, payload)
            return None
        case ClearingRoundRequested():
            if envelope.producer not in CLEARING_REQUESTERS:
                raise Refused("producer", "clearing_requested_by_operator",
                              "clearing rounds are requested by the operator or the scheduler only")
            if payload.care_area not in care_areas():
                raise Refused("payload.care_area", "known_care_area", "is not a known care area")
        case _:
            raise Refused("type", "accepted_by_intake", "regions may not publish events of this type")
    care_area = getattr(payload, "care_area", None)
    if care_area is not None:
        stage(session, _forwarded(envelope), streams.book(care_area))
    return care_area


def _first_violation(violations: list[Violation]) -> None:
    if violations:
        raise Refused.from_violation(violations[0])


def _producer_is(envelope: Envelope, region: str) -> None:
    # A region speaks for itself only. The producer is the channel's party (checked before intake
    # sees the entry, marketplace/services/provenance.py), so this holds a region to its own items.
    if envelope.producer != region:
        raise Refused("producer", "producer_is_region", "a producer may publish for its own region only")


def _accept_offer(session: AsyncSession, known: _Known, envelope: Envelope, offer: OfferPublished) -> None:
    _first_violation(check_offer(offer))
    _producer_is(envelope, offer.region)
    if offer.offer_id in known.offers:
        raise Refused("payload.offer_id", "unique_id", "an offer with this offer_id exists already")
    known.offers.add(offer.offer_id)
    append(session, OFFERS, {
        "offer_id": offer.offer_id, "region": offer.region, "unit_hsa_id": offer.unit_hsa_id,
        "care_area": offer.care_area, "capacity": offer.capacity, "remaining": offer.capacity,
        "window_start": offer.window_start, "window_end": offer.window_end, "price_sek": offer.price_sek,
        "status": "open", "event_id": str(envelope.event_id), "created_at": envelope.occurred_at,
    })


async def _withdraw_offer(session: AsyncSession, known: _Known, envelope: Envelope, cmd: OfferWithdrawn,
                          streams: Streams) -> str:
    _producer_is(envelope, cmd.region)
    offer = known.offer_rows.get(cmd.offer_id) or await session.get(OfferRow, cmd.offer_id)
    if offer is None or offer.region != cmd.region:
        # Another region's offer is refused exactly like one that does not exist: no region learns
        # from a refusal what another region has on the book.
        raise Refused("payload.offer_id", "known_offer", "the region has no offer with this offer_id")
    offer.status = "withdrawn"
    session.add(offer)
    stage(session, _forwarded(envelope), streams.book(offer.care_area))
    return offer.care_area


async def _accept_request(session: AsyncSession, ledger: CaseLedger, known: _Known, envelope: Envelope,
                          request: RequestPublished) -> None:
    _first_violation(check_request(request))
    _producer_is(envelope, request.region)
    if request.request_id in known.requests:
        raise Refused("payload.request_id", "unique_id", "a request with this request_id exists already")
    refs = [p.case_ref for p in request.patients]
    for index, ref in enumerate(refs):
        if ref in known.cases:
            raise Refused(f"payload.patients.{index}.case_ref", "unique_case_ref",
                          "a case with this case_ref exists already")
    known.requests.add(request.request_id)
    known.cases.update(refs)
    eid = str(envelope.event_id)
    append(session, REQUESTS, {
        "request_id": request.request_id, "region": request.region, "care_area": request.care_area,
        "window_start": request.window_start, "window_end": request.window_end,
        "max_price_sek": request.max_price_sek, "max_travel_km": request.max_travel_km,
        "excluded_regions": list(request.excluded_regions), "requires_agreement": request.requires_agreement,
        "status": "open", "event_id": eid, "created_at": envelope.occurred_at,
    })
    await ledger.load(refs)
    commands: list[Command] = []
    for patient in request.patients:
        ref = patient.case_ref
        commands += [
            IdentifyNeed(ref, request_id=request.request_id, home_region=request.region,
                         care_area=request.care_area, waiting_since=patient.waiting_since,
                         window_end=request.window_end, command_id=stable_event_id(eid, ref, "identify")),
            PlaceOnBook(ref, command_id=stable_event_id(eid, ref, "place")),
        ]
    await ledger.apply_all(commands, correlation_id=envelope.correlation_id, producer=CONSUMER)


async def _withdraw_request(session: AsyncSession, ledger: CaseLedger, known: _Known, envelope: Envelope,
                            cmd: RequestWithdrawn) -> str:
    _producer_is(envelope, cmd.region)
    request = known.request_rows.get(cmd.request_id)
    if request is not None:
        cases = {c.case_ref: c for c in known.request_cases.get(cmd.request_id, [])}
    else:  # published in this batch
        request = await session.get(RequestRow, cmd.request_id)
        query = select(CaseRow).where(CaseRow.request_id == cmd.request_id)
        cases = {c.case_ref: c for c in (await session.exec(query)).all()} if request is not None else {}
    if request is None or request.region != cmd.region:
        raise Refused("payload.request_id", "known_request", "the region has no request with this request_id")
    wanted = list(cmd.case_refs) if cmd.case_refs is not None else list(cases)
    for index, ref in enumerate(wanted):
        if ref not in cases:
            raise Refused(f"payload.case_refs.{index}", "known_case", "the request has no case with this case_ref")
    if cmd.case_refs is None:
        request.status = "withdrawn"
        session.add(request)
    ledger.adopt(cases.values())  # read just now: the ledger need not read them again
    await ledger.load(wanted)
    for ref in wanted:
        state = ledger.states[ref]
        if state is None or "withdraw" not in allowed_commands(state.status):
            continue  # already closed, performed or withdrawn: nothing left to withdraw
        await ledger.apply(Withdraw(ref, reason=WithdrawalReason(cmd.reason_code),
                                    command_id=stable_event_id(envelope.event_id, ref, "withdraw")),
                           correlation_id=envelope.correlation_id, producer=CONSUMER)
    return request.care_area


async def _agreement(session: AsyncSession, envelope: Envelope, payload: agreements.AgreementEvent) -> None:
    # An agreement changes what the next clearing round may match (rounds read the agreements in
    # force as of their day); it is not an item of a book, so it is not staged on a book stream.
    if isinstance(payload, AgreementRegistered) and payload.agreement_id is None:
        _first_violation(check_agreement(payload))  # type: ignore[arg-type]  # the triple form has all three
    await agreements.apply(session, envelope, payload)
