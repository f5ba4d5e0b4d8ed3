"""`nvf demo`: the whole marketplace in one process, on the embedded defaults.

The regions publish their offers and requests onto the bus, the workers validate, store and clear
the book, and the proposed matches are read back from the database. Then the parties carry a sample
of the held cases on, over the months of a campaign played on a simulated clock (`demo_regions.clock`):
the whole run, workers and deadline sweeps included, reads the time from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlmodel import col, func, select

from demo_regions.clock import SimulatedClock
from demo_regions.outcome import PartyOutcome
from demo_regions.play import Deadlines, play_parties
from demo_regions.scenario import BusIds, bus_id, clearing_requests, new_run_id, region_events
from events import Envelope
from events.parties import SCHEDULER
from marketplace.adapters.database import Database
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.adapters.orm import CaseRow, MatchRow, PlacementRow
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.redis_users import prepare_access
from marketplace.entrypoints.progress import wait_until_settled
from marketplace.lifecycle.swedish_time import swedish_date
from marketplace.services.directory import ensure_keys, key_directory
from marketplace.services.waiting_times import import_sample
from marketplace.settings import Settings
from matchers.model import Scenario
from matchers.reference import regions
from workers.app import ROLES, running, stream_groups
from workers.runtime import Runtime
from workers.sweeper import DeadlineSweeper


@dataclass
class DemoResult:
    run_id: str
    rows: list[dict[str, Any]]
    seconds: float
    matches: list[MatchRow]
    showcase: str | None = None  # a case that went furthest along its lifecycle
    play: PartyOutcome | None = None
    clock: SimulatedClock | None = None


class _Sweeps(Deadlines):
    """The play's deadline sweeps: the marketplace's own sweeper, run when the play asks (each
    simulated morning; the demo hosts no interval sweeper: a wall-clock interval means nothing here)."""

    def __init__(self, sweeper: DeadlineSweeper, settle: Callable[[], Awaitable[None]]) -> None:
        self.sweeper, self._settle = sweeper, settle

    async def sweep(self) -> int:
        return await self.sweeper.tick()

    async def settle(self) -> None:
        await self._settle()


async def run_demo(settings: Settings, redis_url: str, scenario: Scenario, *, console: Console,
                   policy: str = "optimal", reset: bool = True) -> DemoResult:
    started = time.perf_counter()
    db = Database.of(settings)
    if reset:
        # The demo owns its store: start from an empty book each time, on a schema at head (whatever
        # NVF_DB_AUTO_MIGRATE says: the store is the demo's own).
        await db.drop_schema()
        await db.upgrade()
    # Each role, region and the operator connects as its own Redis user (marketplace/access.py).
    credentials = await prepare_access(settings, redis_url)
    runtime = Runtime.create(settings, redis_url, db=db, credentials=credentials)
    # Every event, deadline and receipt of the run is dated on the campaign's own calendar.
    clock = SimulatedClock.campaign(scenario.as_of)
    runtime.context.clock = clock
    parties = PartyClients(redis_url, credentials)
    since_ms = int(time.time() * 1000)
    run_id = new_run_id()
    # The regions' input is dated when they send it, on the simulated calendar (a recorded log of
    # the run then keeps offers, rounds and answers on one time line).
    envelopes = _dated(region_events(scenario, run_id=run_id), clock)
    rounds = clearing_requests(scenario, run_id=run_id, policy=policy)
    round_ids = [r.payload["round_id"] for r in rounds]
    pairs = stream_groups(runtime, ROLES)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=False)
    if reset:
        await _delete_streams(redis_url, [s for s, _ in pairs] + [runtime.streams.rejections]
                              + [runtime.streams.case_feed(code) for code in regions()])
    async with parties, running(runtime, ROLES):
        # The lägesbild beside the book: the shipped waiting-time sample, for `nvf waits` afterwards.
        waits = await import_sample(db)
        console.print(f"waiting times: {waits.rows} monthly figures of 21 regions registered "
                      f"({waits.inserted} new, {waits.unchanged} unchanged)")
        with progress:
            publish = progress.add_task("regions publish offers and requests", total=len(envelopes))
            for start in range(0, len(envelopes), 200):
                # Each region on its own ingress stream, as its own user.
                await parties.publish(runtime.streams, envelopes[start:start + 200])
                progress.update(publish, completed=min(start + 200, len(envelopes)))
            # The operator asks for the rounds once intake has taken in every region's input: the
            # regions' streams are apart, so nothing else orders a round after them.
            await wait_until_settled(runtime.redis, db, pairs, [])
            # The regions list their needs in the morning; the operator clears the book at noon.
            clock.advance(timedelta(hours=4))
            rounds = _dated(rounds, clock)
            await parties.publish(runtime.streams, rounds)
            clearing = progress.add_task("workers clear the book and tell the parties", total=len(round_ids))
            backlog_task = progress.add_task("entries in flight", total=None)

            def tick(done: int, backlog: int) -> None:
                progress.update(clearing, completed=done)
                progress.update(backlog_task, description=f"entries in flight: {backlog}")

            messages = progress.add_task("secure messages sent / receipted", total=None)
            counter = asyncio.create_task(_count_messages(db, progress, clearing, messages, round_ids))
            try:
                await wait_until_settled(runtime.redis, db, pairs, round_ids, on_tick=tick)
                # The regions' own systems carry a sample of the placed cases on: referral, care, payment.
                play = progress.add_task("party play", total=None)

                def step(name: str, cases: int) -> None:
                    progress.update(play, advance=1, description=f"party play, {swedish_date(clock())}: "
                                                                  f"{name} ({cases} cases)")

                scheduler = runtime.for_party(SCHEDULER) if credentials is not None else runtime
                if scheduler is not runtime:
                    await scheduler.connect()
                try:
                    sweeps = _Sweeps(DeadlineSweeper(scheduler),
                                     lambda: wait_until_settled(runtime.redis, db, pairs, round_ids))
                    # The regions' keys and the address book, provisioned in the demo's key directory.
                    keys = key_directory(settings.state_dir)
                    ensure_keys(keys)
                    outcome = await play_parties(parties, runtime.streams, keys,
                                                 since_ms=since_ms, on_step=step, clock=clock, deadlines=sweeps)
                    await sweeps.sweeper.lock.release()
                finally:
                    if scheduler is not runtime:
                        await scheduler.broker.stop()
                progress.update(play, description="party play: done")
                await wait_until_settled(runtime.redis, db, pairs, round_ids, on_tick=tick)
            finally:
                counter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counter
            await _show_counts(db, progress, clearing, messages, round_ids)
        rows, matches = await read_allocation(db, scenario, round_ids)
        showcase = await _furthest_case(db)
    await db.dispose()
    return DemoResult(run_id=run_id, rows=rows, seconds=time.perf_counter() - started, matches=matches,
                      showcase=showcase, play=outcome, clock=clock)


def _dated(envelopes: Iterable[Envelope], clock: SimulatedClock) -> list[Envelope]:
    return [e.model_copy(update={"occurred_at": clock()}) for e in envelopes]


async def _show_counts(db: Database, progress: Progress, clearing: TaskID, messages: TaskID,
                       round_ids: list[str]) -> None:
    """What a person watching wants to see move: patients placed, messages sent and receipted."""
    async with db.session() as session:
        placed = (await session.exec(select(func.count()).select_from(MatchRow)
                                     .where(col(MatchRow.round_id).in_(round_ids)))).one()
        sent = (await session.exec(select(func.count()).select_from(SecureMessageRow)
                                   .where(col(SecureMessageRow.handed_over_at).is_not(None)))).one()
        receipted = (await session.exec(select(func.count()).select_from(SecureMessageRow)
                                        .where(col(SecureMessageRow.receipt_status).is_not(None)))).one()
    progress.update(clearing, description=f"workers clear the book: {placed} patients placed")
    progress.update(messages, total=max(sent, 1), completed=receipted,
                    description=f"secure messages: {sent} sent, {receipted} receipted")


async def _count_messages(db: Database, progress: Progress, clearing: TaskID, messages: TaskID,
                          round_ids: list[str]) -> None:
    # A display refresh, twice a second; nothing waits on it.
    while True:
        with contextlib.suppress(Exception):
            await _show_counts(db, progress, clearing, messages, round_ids)
        await asyncio.sleep(0.5)


async def _furthest_case(db: Database) -> str | None:
    async with db.session() as session:
        for state in ("closed", "settled", "invoiced", "referral_acknowledged", "referred", "match_proposed"):
            row = (await session.exec(select(CaseRow.case_ref).where(CaseRow.state == state)
                                      .order_by(col(CaseRow.case_ref)).limit(1))).first()
            if row is not None:
                return row
    return None


async def _delete_streams(redis_url: str, names: list[str]) -> None:
    # Before the workers start: a stream deleted under a blocked XREADGROUP breaks its reader.
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        await client.delete(*set(names))
    finally:
        await client.aclose()


async def read_allocation(db: Database, scenario: Scenario,
                          round_ids: list[str]) -> tuple[list[dict[str, Any]], list[MatchRow]]:
    """The allocation of the given rounds as stored, one row per patient of the scenario, in its order."""
    async with db.session() as session:
        placements = (await session.exec(
            select(PlacementRow).where(col(PlacementRow.round_id).in_(round_ids)))).all()
        matches = list((await session.exec(select(MatchRow).where(col(MatchRow.round_id).in_(round_ids)))).all())
    by_case = {p.case_ref: p for p in placements}
    ids = BusIds.of(scenario)  # the file's own ids, where the bus needed others
    rows = []
    for request in scenario.requests:
        for patient in request.patients:
            p = by_case.get(bus_id("case", patient.case_ref))
            if p is None:
                raise RuntimeError(f"case {patient.case_ref} has no outcome in rounds {round_ids}")
            rows.append({"case_ref": ids.original(p.case_ref), "request_id": ids.original(p.request_id),
                         "offer_id": ids.original(p.offer_id),
                         "reason": p.reason, "cost_sek": p.cost_sek, "distance_km": p.distance_km,
                         "wait_days": p.wait_days})
    return rows, matches


def write_jsonl_atomically(rows: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    os.replace(tmp, out)


def render_summary(console: Console, scenario: Scenario, result: DemoResult) -> None:
    names = regions()
    requests = {r.request_id: r for r in scenario.requests}
    per: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in result.rows:
        r = requests[row["request_id"]]
        agg = per[(r.region, r.care_area)]
        agg["patients"] += 1
        if row["offer_id"]:
            agg["placed"] += 1
            agg["wait_days"] += row["wait_days"]
    money: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for m in result.matches:
        money[(m.requesting_region, m.care_area)][0] += m.price_sek
        money[(m.requesting_region, m.care_area)][1] += m.ancillary_cost_sek
    table = Table(title=f"{scenario.name}: clearing as of {scenario.as_of}", title_justify="left")
    for heading, justify in (("home region", "left"), ("care area", "left"), ("placed", "right"),
                             ("patients", "right"), ("avg wait days", "right"),
                             ("procedure SEK", "right"), ("ancillary SEK", "right")):
        table.add_column(heading, justify=justify)  # type: ignore[arg-type]
    totals = [0.0] * 5
    for (region, area), agg in sorted(per.items()):
        proc, anc = money[(region, area)]
        avg = agg["wait_days"] / agg["placed"] if agg["placed"] else 0
        home = f"{region} {names[region].name.removeprefix('Region ')}"
        table.add_row(home, area, f"{agg['placed']:.0f}", f"{agg['patients']:.0f}", f"{avg:.0f}",
                      f"{proc:,.0f}".replace(",", " "), f"{anc:,.0f}".replace(",", " "))
        for i, v in enumerate((agg["placed"], agg["patients"], agg["wait_days"], proc, anc)):
            totals[i] += v
    table.add_section()
    table.add_row("all", "", f"{totals[0]:.0f}", f"{totals[1]:.0f}",
                  f"{(totals[2] / totals[0] if totals[0] else 0):.0f}",
                  f"{totals[3]:,.0f}".replace(",", " "), f"{totals[4]:,.0f}".replace(",", " "))
    console.print(table)
    console.print(f"placed {totals[0]:.0f} of {totals[1]:.0f} patients, {totals[2]:.0f} wait days; "
                  f"procedures {totals[3]:,.0f} SEK + ancillary {totals[4]:,.0f} SEK; "
                  f"{result.seconds:.1f} s end to end (run {result.run_id})".replace(",", "\u202f"))
    play, clock = result.play, result.clock
    today = f" --today {swedish_date(clock())}" if clock is not None else ""
    if play is not None and play.started_at and play.ended_at:
        sampled = len(play.carried) + len(play.declined) + len(play.expired) + len(play.patient_declined)
        console.print(f"party play, {swedish_date(play.started_at)} to {swedish_date(play.ended_at)} (simulated): "
                      f"{sampled} held cases followed; {len(play.settled)} of {len(play.carried)} carried to "
                      f"settlement, {len(play.declined)} declined by the provider, {len(play.expired)} holds "
                      f"expired unanswered, {len(play.patient_declined)} declined by the patient "
                      f"(the holds of the cases not followed lapsed unanswered too); {len(play.late)} of the "
                      f"carried were cared for after their guarantee date, with the sweeper's warnings")
    if result.showcase:
        # As the person can type it: `./dev nvf` when the demo was started through ./dev (no venv active).
        nvf = os.environ.get("NVF_DEV_COMMAND") or "nvf"
        console.print(f"\nFollow a case: [bold]{nvf} timeline {result.showcase} --verify[/bold]   "
                      f"Market health: [bold]{nvf} stats{today}[/bold]   "
                      f"The bus: [bold]{nvf} tail --from-start --type match.proposed[/bold] (while a demo runs)\n"
                      f'Find providers: [bold]{nvf} agreements search "grå starr" --region 25 --has-agreement[/bold]   '
                      f"Waiting times per region: [bold]{nvf} waits --care-area cataract[/bold]   "
                      f"Units' free capacity: [bold]{nvf} capacity[/bold]")
