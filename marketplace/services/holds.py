"""Holds on offer slots: released when a case leaves its match before care is agreed."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from events import Streams
from marketplace.adapters.orm import CaseRow, MatchRow, OfferRow


async def release_hold(session: AsyncSession, case: CaseRow, streams: Streams, *, correlation_id: str,
                       reason: str) -> MatchRow | None:
    """Give the case's held slot back to its offer; returns the released match, if any."""
    if case.current_match_id is None:
        return None
    match = await session.get(MatchRow, case.current_match_id)
    case.current_match_id = None
    if match is None or match.status not in ("proposed", "accepted"):
        return None
    match.status = "released"
    session.add(match)
    offer = await session.get(OfferRow, match.offer_id)
    if offer is not None:
        offer.remaining += 1
        session.add(offer)
    return match
