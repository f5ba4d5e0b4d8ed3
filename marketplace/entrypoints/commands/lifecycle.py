"""`nvf case ...` (the parties' commands on a case) and `nvf stats` (lead times from the timelines)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import date
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from events import CaseCommandIssued, Streams, new_envelope
from marketplace.adapters.database import Database
from marketplace.adapters.orm import CaseEventRow, CaseRow, RejectionRow
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.redis_users import AccessError, prepare_access
from marketplace.entrypoints.bootstrap import redis_server
from marketplace.entrypoints.commands.db import ready
from marketplace.errors import parse_day
from marketplace.lifecycle import LeadTime, market_stats
from marketplace.parties import ingress_parties
from marketplace.services.case_commands import COMMANDS_BY_NAME
from marketplace.services.timeline import to_entry
from marketplace.settings import Settings

console = Console()
case_app = typer.Typer(help="The parties' commands on a case (published on the bus as `case.command`).",
                       no_args_is_help=True)

# Commands that answer a particular match name it; the CLI fills in the case's current one.
_NEEDS_MATCH = {"accept_match", "decline_match", "record_patient_answer"}


def _parse_args(pairs: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--arg takes key=value, not {pair!r}")
        args[key] = {"true": True, "false": False}.get(value.lower(), value)
    return args


@case_app.command("do")
def do(
    command: Annotated[str, typer.Argument(help="one of: " + ", ".join(sorted(COMMANDS_BY_NAME)))],
    case_ref: Annotated[str, typer.Argument(help="the case's pseudonymous reference")],
    as_: Annotated[str, typer.Option("--as", help="who speaks: a region code, 'operator' or 'scheduler'")],
    arg: Annotated[list[str] | None, typer.Option(help="command argument key=value (e.g. reason_code=no_capacity, "
                                                       "accepted=true, scheduled_for=2026-04-02)")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the outcome (0: do not wait)")] = 10.0,
) -> None:
    """Issue COMMAND on CASE_REF as a party would, e.g. `nvf case do accept_match case-25-1 --as 01`."""
    name = command.replace("-", "_")
    if name not in COMMANDS_BY_NAME:
        console.print(f"[red]unknown command {command!r}[/red]; choose from {sorted(COMMANDS_BY_NAME)}")
        raise typer.Exit(2)
    settings = Settings()
    code = asyncio.run(_issue(settings, name, case_ref, as_, _parse_args(arg or []), wait))
    raise typer.Exit(code)


async def _issue(settings: Settings, name: str, case_ref: str, producer: str, args: dict[str, Any],
                 wait: float) -> int:
    db = Database.of(settings)
    try:
        await ready(db, settings)
        async with db.session() as session:
            case = await session.get(CaseRow, case_ref)
        if case is None:
            console.print(f"[red]no case {case_ref!r}[/red]")
            return 1
        if name in _NEEDS_MATCH and "match_id" not in args:
            if case.current_match_id is None:
                console.print(f"[red]case {case_ref} holds no match now (state {case.state})[/red]")
                return 1
            args["match_id"] = case.current_match_id
        envelope = new_envelope(CaseCommandIssued(case_ref=case_ref, command=name, args=args),
                                producer=producer)
        if producer not in ingress_parties():
            console.print(f"[red]--as must be a region code, operator or scheduler, not {producer!r}[/red]")
            return 2
        with redis_server(settings) as redis_url:
            # As the party itself, on its own ingress stream: the stream is what names the sender.
            try:
                async with PartyClients(redis_url, await prepare_access(settings, redis_url)) as parties:
                    await parties.publish(Streams(settings.stream_prefix), [envelope])
            except AccessError as exc:
                console.print(f"[red]access:[/red] {exc}")
                return 2
        console.print(f"published {name} on {case_ref} as {producer} (event {envelope.event_id})")
        return await _await_outcome(db, case_ref, str(envelope.event_id), case.version, wait)
    finally:
        await db.dispose()


async def _await_outcome(db: Database, case_ref: str, event_id: str, version: int, wait: float) -> int:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        async with db.session() as session:
            refusal = (await session.exec(select(RejectionRow).where(RejectionRow.event_id == event_id))).first()
            case = await session.get(CaseRow, case_ref)
        if refusal is not None:
            console.print(f"[red]refused[/red]: {refusal.field} ({refusal.rule}): {refusal.message}")
            return 1
        if case is not None and case.version != version:
            console.print(f"case {case_ref} is now [bold]{case.state}[/bold] (version {case.version})")
            return 0
        await asyncio.sleep(0.2)
    if wait:
        console.print("[yellow]no outcome yet[/yellow]: are the workers running (`nvf run`)?")
    return 0


def _fmt(lead: LeadTime) -> str:
    if not lead.count:
        return "-"
    return f"{lead.median_days:.1f} / {lead.p90_days:.1f} d (n={lead.count})"


def stats(
    today: Annotated[str | None, typer.Option(help="the day to count to (YYYY-MM-DD); default today")] = None,
) -> None:
    """Lead times (need -> match, match -> referral, referral -> performed), cases per state and cases near
    or past their care-guarantee date, per home region and care area, from the case timelines."""
    day = parse_day(today, "--today") or date.today()
    settings = Settings()
    result = asyncio.run(_market_stats(settings, day))
    if result.overall is None:
        console.print("no cases yet")
        return
    lead = Table(title=f"lead times (median / p90), as of {day}", title_justify="left")
    for heading in ("home region", "care area", "cases", "need -> match", "match -> referral",
                    "referral -> performed", "near guarantee", "past guarantee"):
        lead.add_column(heading)
    groups = sorted(result.groups.values(), key=lambda g: (g.home_region, g.care_area))
    for g in [*groups, result.overall]:
        if g is result.overall:
            lead.add_section()
        lead.add_row(g.home_region, g.care_area, str(g.cases), _fmt(g.lead_times.need_to_match),
                     _fmt(g.lead_times.match_to_referral), _fmt(g.lead_times.referral_to_performed),
                     str(len(g.guarantee.near)), str(len(g.guarantee.past)))
    console.print(lead)
    states = Table(title="cases per state", title_justify="left")
    states.add_column("state")
    states.add_column("cases", justify="right")
    for state, count in sorted(result.overall.per_state.items(), key=lambda kv: -kv[1]):
        states.add_row(state, str(count))
    console.print(states)


async def _market_stats(settings: Settings, day: date) -> Any:
    db = Database.of(settings)
    try:
        await ready(db, settings)
        async with db.session() as session:
            rows = (await session.exec(select(CaseEventRow).order_by(col(CaseEventRow.case_ref),
                                                                     col(CaseEventRow.version)))).all()
    finally:
        await db.dispose()
    timelines: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        timelines[row.case_ref].append(to_entry(row))
    return market_stats(timelines.values(), day)


def register(app: typer.Typer) -> None:
    app.add_typer(case_app, name="case")
    app.command("stats")(stats)
