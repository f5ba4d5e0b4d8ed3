"""Care agreements in the store: the intake's handler for the agreement events, and the agreements
in force that a clearing round may use.

The rules are the pure lifecycle's (`marketplace.agreements`); this module reads the agreement as
it stands, asks the lifecycle for the change and writes it: the current row, its care areas and a
new version in its timeline, all in the caller's transaction (with the inbox and the outbox).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import structlog
from sqlalchemy import and_, delete, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from events import (
    AgreementDrafted,
    AgreementEnded,
    AgreementRegistered,
    AgreementTerms,
    AgreementUpdated,
    Envelope,
)
from marketplace.adapters.orm import AgreementAreaRow, AgreementRow, AgreementVersionRow, utcnow
from marketplace.agreements import (
    Agreement,
    AgreementRefused,
    AgreementStatus,
    Change,
    draft,
    end,
    legacy_agreement_id,
    register,
    register_triple,
    update,
)
from marketplace.services.refusals import Refused
from matchers.model import Agreement as MatchingAgreement

log = structlog.get_logger(__name__)
AgreementEvent = AgreementDrafted | AgreementRegistered | AgreementUpdated | AgreementEnded


def to_domain(row: AgreementRow) -> Agreement:
    terms = AgreementTerms.model_validate(row.terms) if row.terms is not None else None
    return Agreement(row.agreement_id, row.purchaser, row.provider, tuple(row.care_areas), AgreementStatus(row.status),
                     row.version, terms, row.ended_on)


async def load(session: AsyncSession, agreement_id: str) -> Agreement | None:
    row = await session.get(AgreementRow, agreement_id)
    return to_domain(row) if row is not None else None


def decide(current: Agreement | None, payload: AgreementEvent, actor: str) -> Change | None:
    """The lifecycle's answer to one event (pure); `actor` is the envelope's producer."""
    match payload:
        case AgreementDrafted():
            return draft(current, payload.agreement_id, payload.purchaser, payload.terms, actor)
        case AgreementUpdated():
            return update(current, payload.agreement_id, payload.purchaser, payload.terms, actor)
        case AgreementEnded():
            return end(current, payload.agreement_id, payload.purchaser, payload.ended_on, actor)
        case AgreementRegistered(agreement_id=None, provider=str(provider), care_area=str(area)):
            return register_triple(current, payload.purchaser, provider, area, actor)
        case AgreementRegistered(agreement_id=str(agreement_id)):
            return register(current, agreement_id, payload.purchaser, payload.terms, actor)
    raise AssertionError(f"not an agreement event: {payload!r}")


def agreement_id_of(payload: AgreementEvent) -> str:
    if payload.agreement_id is not None:
        return payload.agreement_id
    assert isinstance(payload, AgreementRegistered) and payload.provider and payload.care_area
    return legacy_agreement_id(payload.purchaser, payload.provider, payload.care_area)


async def apply(session: AsyncSession, envelope: Envelope, payload: AgreementEvent) -> Change | None:
    """Apply one agreement event as its producer sent it; raises Refused with the field and rule.

    Who sent it is the envelope's producer: the region the authenticated channel speaks for. On the
    bus a region is one identity; the roles inside it (agreement owner, care navigator) are not
    told apart here, the HTTP API will carry them.
    """
    agreement_id = agreement_id_of(payload)
    row = await session.get(AgreementRow, agreement_id)
    current = to_domain(row) if row is not None else None
    try:
        change = decide(current, payload, envelope.producer)
    except AgreementRefused as exc:
        field = exc.field if exc.field == "producer" else f"payload.{exc.field}"
        raise Refused(field, exc.rule, exc.message) from exc
    if change is not None:
        await _write(session, row, change, envelope, getattr(payload, "reason", ""))
        log.info("agreement.changed", agreement_id=agreement_id, version=change.agreement.version,
                 change=change.event_type, status=change.agreement.status.value, producer=envelope.producer)
    return change


async def _write(session: AsyncSession, row: AgreementRow | None, change: Change, envelope: Envelope,
                 reason: str) -> None:
    a = change.agreement
    terms = a.terms.model_dump(mode="json") if a.terms is not None else None
    # The row's own list of care areas is what its area rows hold (both are written only here), so
    # the change to them is known without reading them.
    had = set(row.care_areas) if row is not None else set()
    if row is None:
        row = AgreementRow(agreement_id=a.agreement_id, purchaser=a.purchaser, provider=a.provider,
                           status=a.status.value, version=a.version)
    row.provider, row.status, row.version, row.terms, row.ended_on = (
        a.provider, a.status.value, a.version, terms, a.ended_on)
    row.unit_hsa_id = a.terms.unit_hsa_id if a.terms else None
    row.unit_name = a.terms.unit_name if a.terms else None
    row.valid_from, row.valid_to = a.valid_from, a.valid_to
    row.price_sek = a.terms.price_sek if a.terms else None
    row.updated_at = utcnow()
    row.care_areas = list(a.care_areas)
    session.add(row)
    gone = sorted(had - set(a.care_areas))
    if gone:
        await session.exec(delete(AgreementAreaRow).where(
            col(AgreementAreaRow.agreement_id) == a.agreement_id, col(AgreementAreaRow.care_area).in_(gone)))
    for area in a.care_areas:
        if area not in had:
            session.add(AgreementAreaRow(agreement_id=a.agreement_id, care_area=area))
    session.add(AgreementVersionRow(
        agreement_id=a.agreement_id, version=a.version, event_type=change.event_type, status=a.status.value,
        event_id=str(envelope.event_id), producer=envelope.producer, occurred_at=envelope.occurred_at,
        ended_on=a.ended_on, reason=reason, terms=terms))


async def agreements_covering(session: AsyncSession, care_areas: Iterable[str], *, in_force_on: date | None = None,
                              provider: str | None = None, units_of: str | None = None) -> list[Agreement]:
    """The agreements that cover one of these care areas; with `in_force_on`, only those that may be
    in force that day (the database narrows by status and dates, `Agreement.in_force_on` decides);
    with `provider`, only that providing region's; with `units_of`, only those of the units (or,
    for the triple form, the providing regions) that region has an agreement with."""
    a = AgreementRow
    ids = select(AgreementAreaRow.agreement_id).where(col(AgreementAreaRow.care_area).in_(list(care_areas)))
    query = select(a).where(col(a.agreement_id).in_(ids))
    if in_force_on is not None:
        query = query.where(a.status != AgreementStatus.DRAFT.value,
                            or_(col(a.valid_from).is_(None), col(a.valid_from) <= in_force_on),
                            or_(col(a.valid_to).is_(None), col(a.valid_to) >= in_force_on),
                            or_(col(a.ended_on).is_(None), col(a.ended_on) > in_force_on))
    if provider is not None:
        query = query.where(a.provider == provider)
    if units_of is not None:
        theirs = select(a.unit_hsa_id).where(a.purchaser == units_of, col(a.unit_hsa_id).is_not(None))
        regions = select(a.provider).where(a.purchaser == units_of, col(a.unit_hsa_id).is_(None))
        query = query.where(or_(col(a.unit_hsa_id).in_(theirs),
                                and_(col(a.unit_hsa_id).is_(None), col(a.provider).in_(regions))))
    rows = (await session.exec(query.order_by(col(a.agreement_id)))).all()
    found = [to_domain(r) for r in rows]
    return [x for x in found if x.in_force_on(in_force_on)] if in_force_on is not None else found


async def in_force(session: AsyncSession, care_area: str, as_of: date) -> tuple[MatchingAgreement, ...]:
    """The agreements a clearing round of `care_area` as of `as_of` may rely on: registered and inside
    their validity on that day (an agreement ended on or before it does not count)."""
    found = {
        MatchingAgreement(a.purchaser, a.provider, care_area)
        for a in await agreements_covering(session, [care_area], in_force_on=as_of)
    }
    return tuple(sorted(found, key=lambda m: (m.purchaser, m.provider)))
