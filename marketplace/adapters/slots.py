"""The book's capacity and its match rows: the one place that takes slots and gives them back.

Clearing takes an offer's slots when it proposes matches; the lifecycle gives a slot back when a
hold is released (declined, expired, withdrawn), and marks the match with how its hold ended. Each
change is a statement whose check is in its own WHERE clause, so a check and its change can never be
split by another writer; what a transaction's events give back is collected and written as one
such statement per table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, event, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from events import MatchProposed
from marketplace.adapters.appends import append, write_collected
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
    await write_settled(session)  # slots given back earlier in this transaction count
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


# What a transaction's lifecycle events did to the book, collected and written in at most two
# statements (holds ended, slots given back) when the transaction commits or before any ORM
# statement reads: an intake batch answering many holds then writes the book once, not per answer.
_PENDING = "nvf.book_changes"


@dataclass
class _BookChanges:
    ends: list[tuple[str, str]] = field(default_factory=list)
    returned: Counter[str] = field(default_factory=Counter)


def settle(session: AsyncSession | Session, ends: Sequence[tuple[str, str]], returned: Mapping[str, int]) -> None:
    """Record that the holds `ends` names ended so (in the order the events came) and that
    `returned[offer_id]` slots went back to each offer; written with the transaction."""
    if not ends and not returned:
        return
    pending: _BookChanges = session.info.setdefault(_PENDING, _BookChanges())
    pending.ends += ends
    pending.returned.update(returned)


def closing_status(statuses: Sequence[str]) -> str:
    """Where an open match ends after `statuses` were said of it in turn: "accepted" keeps a hold
    open, so the first other status closes it and later ones find it closed."""
    return next((status for status in statuses if status not in OPEN_MATCH), statuses[-1])


def _write(session: Session) -> None:
    pending: _BookChanges | None = session.info.pop(_PENDING, None)
    if pending is None:
        return
    write_collected(session)  # the match rows proposed in this transaction may be among those ended
    connection = session.connection()
    said: dict[str, list[str]] = {}
    for match, status in pending.ends:
        said.setdefault(match, []).append(status)
    if said:
        final = {match: closing_status(statuses) for match, statuses in said.items()}
        m = MATCHES.c
        connection.execute(update(MATCHES).where(m.match_id.in_(list(final)), m.status.in_(OPEN_MATCH))
                           .values(status=case(final, value=m.match_id)))
    if pending.returned:
        o = OFFERS.c
        connection.execute(update(OFFERS).where(o.offer_id.in_(list(pending.returned)))
                           .values(remaining=o.remaining + case(dict(pending.returned), value=o.offer_id)))


async def write_settled(session: AsyncSession) -> None:
    """Write the book changes collected so far now (the commit would do it anyway)."""
    if session.info.get(_PENDING) is not None:
        await session.run_sync(_write)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write(session)


@event.listens_for(Session, "do_orm_execute")
def _before_statement(state: ORMExecuteState) -> None:
    if state.session.autoflush:
        _write(state.session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
