"""The book's capacity and its match rows: the one place that takes slots and gives them back.

Clearing takes an offer's slots when it proposes matches; the lifecycle gives a slot back when a
hold is released (declined, expired, withdrawn), and marks the match with how its hold ended. Each
is one statement in the database itself, so a check and its change can never be split by another
writer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from events import MatchProposed
from marketplace.adapters.appends import append
from marketplace.adapters.orm import MatchRow, OfferRow

MATCHES = MatchRow.__table__  # type: ignore[attr-defined]
OFFERS = OfferRow.__table__  # type: ignore[attr-defined]
# A match whose hold is still open; once answered or let go its status says how.
OPEN_MATCH = ("proposed", "accepted")


class CapacityGone(RuntimeError):
    """An offer had fewer slots left than a round took: the round must not be recorded."""


async def take(session: AsyncSession, taken: Mapping[str, int]) -> None:
    """Take `taken[offer_id]` slots of each offer, or raise CapacityGone (nothing of it then commits).

    One statement for all the offers: each row is changed only when it still has its count left,
    so fewer rows changed than offers named means another writer got there first."""
    if not taken:
        return
    o = OFFERS.c
    count = case(dict(taken), value=o.offer_id)
    taking = (update(OFFERS).where(o.offer_id.in_(list(taken)), o.remaining >= count)
              .values(remaining=o.remaining - count))
    if (await (await session.connection()).execute(taking)).rowcount != len(taken):
        raise CapacityGone(f"offers {sorted(taken)}: one has fewer slots left than the round took; "
                           "the round is not recorded")


def propose(session: AsyncSession, match: MatchProposed, at: datetime) -> None:
    """The match row of a proposal (appended in bulk at the commit)."""
    row: dict[str, Any] = {**match.model_dump(), "status": "proposed", "created_at": at}
    append(session, MATCHES, row)


async def end_hold(session: AsyncSession, match_id: str, status: str) -> None:
    """Mark an open match `status` (accepted, declined, expired, released); a closed one stays as it is."""
    await session.exec(update(MatchRow).where(col(MatchRow.match_id) == match_id,
                                              col(MatchRow.status).in_(OPEN_MATCH)).values(status=status))


async def give_back(session: AsyncSession, offer_id: str, match_id: str) -> None:
    """A released hold: its slot returns to the offer and its match is marked released."""
    await end_hold(session, match_id, "released")
    await session.exec(update(OfferRow).where(col(OfferRow.offer_id) == offer_id)
                       .values(remaining=col(OfferRow.remaining) + 1))
