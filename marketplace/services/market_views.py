"""What the pages show about the market, read from the tables: the book, holds, worklists, market
health over time, and the public monthly table. Reads only; each function takes a session.

Aggregation is done here in Python over the columns it needs (a dashboard's read, not a hot path).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.orm import (
    CaseEventRow,
    CaseRow,
    ClearingRoundRow,
    MatchRow,
    OfferRow,
    PlacementRow,
    RequestRow,
)
from marketplace.disclosure import Sum, suppress
from marketplace.lifecycle import DeadlineKind, hold_deadline, replay_timeline
from marketplace.lifecycle.states import GUARANTEE_RUNNING, HOLD_EXPIRES, CaseStatus
from marketplace.services.timeline import to_entry

WAITING_STATES = (CaseStatus.NEED_IDENTIFIED.value, CaseStatus.ON_BOOK.value)
HOLD_STATES = tuple(s.value for s in HOLD_EXPIRES)
RUNNING_STATES = tuple(s.value for s in GUARANTEE_RUNNING)
GUARANTEE_HORIZON_DAYS = 14
_DAY_S = 86_400.0


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day(moment: datetime) -> str:
    return _aware(moment).date().isoformat()


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: a value that was observed (as `nvf stats` reports)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


async def book(session: AsyncSession, today: date) -> list[dict[str, Any]]:
    """Per care area: open offers and the capacity left in them, waiting patients, held slots."""
    areas: dict[str, dict[str, Any]] = defaultdict(lambda: {"open_offers": 0, "open_capacity": 0, "waiting": 0,
                                                            "held": 0})
    offers = await session.exec(select(OfferRow).where(OfferRow.status == "open"))
    for offer in offers:
        if offer.window_end >= today and offer.remaining > 0:
            areas[offer.care_area]["open_offers"] += 1
            areas[offer.care_area]["open_capacity"] += offer.remaining
    cases = await session.exec(select(col(CaseRow.care_area), col(CaseRow.state))
                               .where(col(CaseRow.state).in_(WAITING_STATES + HOLD_STATES)))
    for care_area, state in cases:
        areas[care_area]["waiting" if state in WAITING_STATES else "held"] += 1
    return [{"care_area": area, **values} for area, values in sorted(areas.items())]


def _case(row: CaseRow, today: date) -> dict[str, Any]:
    return {"case_ref": row.case_ref, "region": row.region, "care_area": row.care_area, "state": row.state,
            "guarantee_date": row.guarantee_date.isoformat() if row.guarantee_date else None,
            "days_left": (row.guarantee_date - today).days if row.guarantee_date else None,
            "next_deadline_at": _aware(row.next_deadline_at).isoformat() if row.next_deadline_at else None,
            "updated_at": _aware(row.updated_at).isoformat(), "match_id": row.current_match_id}


async def hold_deadlines(session: AsyncSession, rows: Sequence[CaseRow]) -> dict[str, dict[str, Any]]:
    """For held cases: when the hold lapses and whose answer it waits for (from each timeline)."""
    refs = [r.case_ref for r in rows if r.state in HOLD_STATES]
    if not refs:
        return {}
    entries: dict[str, list[CaseEventRow]] = defaultdict(list)
    found = await session.exec(select(CaseEventRow).where(col(CaseEventRow.case_ref).in_(refs))
                               .order_by(col(CaseEventRow.case_ref), col(CaseEventRow.version)))
    for t in found:
        entries[t.case_ref].append(t)
    out: dict[str, dict[str, Any]] = {}
    for ref, timeline in entries.items():
        state = replay_timeline([to_entry(t) for t in timeline])
        due = hold_deadline(state)
        if due is None or state.match is None:
            continue
        provider = due.kind is DeadlineKind.PROVIDER_ANSWER
        out[ref] = {"hold_due_at": _aware(due.due_at).isoformat(),
                    "awaiting": "provider" if provider else "home region",
                    "awaiting_region": state.match.providing_region if provider else state.home_region,
                    "providing_region": state.match.providing_region}
    return out


async def holds(session: AsyncSession, today: date, limit: int = 200) -> list[dict[str, Any]]:
    """Held slots waiting for a party's answer, the nearest deadline first."""
    rows = (await session.exec(select(CaseRow).where(col(CaseRow.state).in_(HOLD_STATES))
                               .order_by(col(CaseRow.next_deadline_at), col(CaseRow.case_ref)).limit(limit))).all()
    due = await hold_deadlines(session, rows)
    out = [{**_case(r, today), **due.get(r.case_ref, {})} for r in rows]
    return sorted(out, key=lambda c: (c.get("hold_due_at") or "9999", c["case_ref"]))


async def worklist(session: AsyncSession, visible: Any, region: str, today: date) -> dict[str, Any]:
    """One region's worklist among the cases it may see (`visible`, a query of CaseRow): the holds
    waiting for its answer and the referrals it must acknowledge (nearest deadline first), its
    patients' matches waiting for the provider, its patients near or past the guarantee."""
    horizon = today + timedelta(days=GUARANTEE_HORIZON_DAYS)
    held = (await session.exec(visible.where(col(CaseRow.state).in_(HOLD_STATES)))).all()
    due = await hold_deadlines(session, held)
    answer = [{**_case(r, today), **due[r.case_ref]} for r in held
              if r.case_ref in due and due[r.case_ref]["awaiting_region"] == region]
    waiting = [{**_case(r, today), **due[r.case_ref]} for r in held
               if r.case_ref in due and r.region == region and due[r.case_ref]["awaiting"] == "provider"
               and due[r.case_ref]["awaiting_region"] != region]
    referred = (await session.exec(visible.where(CaseRow.state == CaseStatus.REFERRED.value)
                                   .where(col(CaseRow.region) != region))).all()
    to_acknowledge = [{**_case(r, today), "awaiting": "provider", "awaiting_region": region} for r in referred]
    near = (await session.exec(visible.where(CaseRow.region == region)
                               .where(col(CaseRow.state).in_(RUNNING_STATES))
                               .where(col(CaseRow.guarantee_date).is_not(None))
                               .where(col(CaseRow.guarantee_date) <= horizon)
                               .order_by(col(CaseRow.guarantee_date), col(CaseRow.case_ref)).limit(500))).all()
    by_due = lambda c: (c.get("hold_due_at") or "9999", c["case_ref"])  # noqa: E731
    return {"today": today.isoformat(), "to_answer": sorted(answer, key=by_due) + to_acknowledge,
            "waiting_for_provider": sorted(waiting, key=by_due), "near_guarantee": [_case(r, today) for r in near]}


async def guarantee_worklist(session: AsyncSession, today: date, limit: int = 200) -> list[dict[str, Any]]:
    """Cases whose care is still pending and whose guarantee date is past or within the horizon."""
    horizon = today + timedelta(days=GUARANTEE_HORIZON_DAYS)
    rows = (await session.exec(select(CaseRow).where(col(CaseRow.state).in_(RUNNING_STATES))
                               .where(col(CaseRow.guarantee_date).is_not(None))
                               .where(col(CaseRow.guarantee_date) <= horizon)
                               .order_by(col(CaseRow.guarantee_date), col(CaseRow.case_ref)).limit(limit))).all()
    return [_case(r, today) for r in rows]


async def unanswered_referrals(session: AsyncSession, today: date, limit: int = 200) -> list[dict[str, Any]]:
    """Referrals sent and not yet acknowledged by the provider, the oldest first."""
    rows = (await session.exec(select(CaseRow).where(CaseRow.state == CaseStatus.REFERRED.value)
                               .order_by(col(CaseRow.updated_at), col(CaseRow.case_ref)).limit(limit))).all()
    return [_case(r, today) for r in rows]


@dataclass(frozen=True)
class _Match:
    day: str
    month: str
    case_ref: str
    care_area: str
    requesting: str
    providing: str
    wait_days: int
    ancillary: float
    days_to_match: float | None


async def _first_matches(session: AsyncSession) -> list[_Match]:
    """Each case's first proposal (later ones after a decline are not new placements), with the
    time from its request's arrival."""
    requested = dict((await session.exec(select(RequestRow.request_id, RequestRow.created_at))).all())
    rows = (await session.exec(select(MatchRow).order_by(col(MatchRow.created_at), col(MatchRow.match_id)))).all()
    seen: set[str] = set()
    out: list[_Match] = []
    for m in rows:
        if m.case_ref in seen:
            continue
        seen.add(m.case_ref)
        created = _aware(m.created_at)
        asked = requested.get(m.request_id)
        waited = (created - _aware(asked)).total_seconds() / _DAY_S if asked is not None else None
        out.append(_Match(created.date().isoformat(), created.strftime("%Y-%m"), m.case_ref, m.care_area,
                          m.requesting_region, m.providing_region, m.wait_days, m.ancillary_cost_sek,
                          max(0.0, waited) if waited is not None else None))
    return out


def _by_day(items: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, float]]:
    """{series: {day: value}} summed, from (series, day, value)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for series, day, value in items:
        out[series][day] += value
    return {k: dict(v) for k, v in sorted(out.items())}


async def market_health(session: AsyncSession, today: date) -> dict[str, Any]:
    """The lägesbild over time (by day): placements per region and care area, wait days, time to
    match (median and p90), unmatched demand, ancillary costs per region; per care area the fill
    rate (by the day the capacity was published) and the capacity that expired unused."""
    matches = await _first_matches(session)
    to_match: dict[str, list[float]] = defaultdict(list)
    for m in matches:
        if m.days_to_match is not None:
            to_match[m.day].append(m.days_to_match)
    rounds = dict((await session.exec(select(ClearingRoundRow.round_id, ClearingRoundRow.completed_at))).all())
    unplaced = await session.exec(select(PlacementRow.round_id, PlacementRow.case_ref)
                                  .where(col(PlacementRow.offer_id).is_(None)))
    unmatched: dict[str, set[str]] = defaultdict(set)
    for round_id, case_ref in unplaced:
        if round_id in rounds:
            unmatched[_day(rounds[round_id])].add(case_ref)
    # Fill rate by the day the capacity was published (how much of it has been used since); unused
    # capacity on the day its window ended, or today for capacity expired before its window ended.
    fill: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    expired: list[tuple[str, str, float]] = []
    for offer in await session.exec(select(OfferRow)):
        published = (offer.care_area, _day(offer.created_at))
        fill[published][0] += offer.capacity - offer.remaining
        fill[published][1] += offer.capacity
        if offer.remaining > 0 and (offer.window_end < today or offer.status == "expired"):
            lapsed = min(offer.window_end, today).isoformat()
            expired.append((offer.care_area, lapsed, float(offer.remaining)))
    fill_rate: dict[str, dict[str, float | None]] = defaultdict(dict)
    for (area, day), (used, cap) in sorted(fill.items()):
        fill_rate[area][day] = round(used / cap, 4) if cap else None
    days = sorted({m.day for m in matches} | set(unmatched))
    return {
        "days": days,
        "placements_by_region": _by_day((m.requesting, m.day, 1) for m in matches),
        "placements_by_care_area": _by_day((m.care_area, m.day, 1) for m in matches),
        "wait_days": _by_day(("wait days", m.day, m.wait_days) for m in matches),
        "time_to_match_days": {
            "median": {d: _median(v) for d, v in sorted(to_match.items())},
            "p90": {d: _percentile(v, 0.9) for d, v in sorted(to_match.items())},
        },
        "unmatched_demand": {"patients not placed": {d: float(len(v)) for d, v in sorted(unmatched.items())}},
        "ancillary_cost_by_region": _by_day((m.requesting, m.day, m.ancillary) for m in matches),
        "fill_rate": dict(fill_rate),
        "capacity_expired_unused": _by_day(expired),
    }


PUBLIC_COUNTS = ("open_capacity", "requests", "matches", "moved")


async def public_table(session: AsyncSession, today: date) -> dict[str, Any]:
    """Per month, region and care area: open capacity, patients requested, matched, moved to another
    region, median days to match; small counts and the cells that would reveal them suppressed.
    Only codes and numbers: no free text, no case references."""
    cells: dict[tuple[str, str, str, str], int] = defaultdict(int)
    keys: set[tuple[str, str, str]] = set()
    for offer in await session.exec(select(OfferRow).where(OfferRow.status == "open")):
        if offer.window_end >= today:
            key = (offer.window_start.strftime("%Y-%m"), offer.region, offer.care_area)
            keys.add(key)
            cells[(*key, "open_capacity")] += offer.remaining
    requested = await session.exec(select(RequestRow.request_id, RequestRow.created_at))
    month_of_request = {rid: _aware(created).strftime("%Y-%m") for rid, created in requested}
    patients = await session.exec(select(CaseRow.request_id, CaseRow.region, CaseRow.care_area))
    for request_id, region, area in patients:
        key = (month_of_request.get(request_id, today.strftime("%Y-%m")), region, area)
        keys.add(key)
        cells[(*key, "requests")] += 1
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for m in await _first_matches(session):
        key = (m.month, m.requesting, m.care_area)
        keys.add(key)
        cells[(*key, "matches")] += 1
        if m.requesting != m.providing:
            cells[(*key, "moved")] += 1
        if m.days_to_match is not None:
            times[key].append(m.days_to_match)
    table = {(*k, measure): cells.get((*k, measure), 0) for k in keys for measure in PUBLIC_COUNTS}
    # Each measure's regional total per month and care area is published beside its parts.
    sums: list[Sum[tuple[str, str, str, str]]] = []
    by_total: dict[tuple[str, str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for month, region, area, measure in table:
        by_total[(month, area, measure)].append((month, region, area, measure))
    for (month, area, measure), parts in by_total.items():
        total_key = (month, "all", area, measure)
        table[total_key] = sum(table[p] for p in parts)
        sums.append(Sum(total_key, tuple(sorted(parts))))
    hidden = suppress(table, sums)
    rows: list[dict[str, Any]] = []
    for month, region, area in sorted(keys | {(m, "all", a) for (m, a, _) in by_total}):
        row: dict[str, Any] = {"month": month, "region": region, "care_area": area}
        for measure in PUBLIC_COUNTS:
            cell = (month, region, area, measure)
            row[measure] = None if cell in hidden else table[cell]
        matched_key = (month, region, area, "matches")
        if region == "all":
            waits = [t for (m, _r, a), v in times.items() if m == month and a == area for t in v]
        else:
            waits = times.get((month, region, area), [])
        median = _median(waits)
        row["median_days_to_match"] = None if matched_key in hidden or median is None else round(median, 1)
        rows.append(row)
    return {"threshold": 5, "rows": rows}
