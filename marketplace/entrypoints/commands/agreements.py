"""`nvf agreements ...`: care agreements (vårdavtal) and the care navigators' provider search.

Changes (create, register, end, import) are published on the bus as the region given by `--as`
would publish them, and the command waits for the intake's verdict. On the bus the region is the
identity (the producer the channel speaks for); the roles inside a region (agreement owner,
care navigator) are not told apart there: the HTTP API will carry them. Reading commands (list,
show, preview, search) read the store.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlmodel import col, select

from events import (
    AgreementDrafted,
    AgreementEnded,
    AgreementRegistered,
    AgreementTerms,
    Contact,
    Envelope,
    Payload,
    Streams,
    new_envelope,
)
from marketplace.adapters.database import Database
from marketplace.adapters.orm import AgreementRow, AgreementVersionRow, ProcessedEventRow, RejectionRow
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.redis_users import AccessError, prepare_access
from marketplace.adapters.search_index import SearchQueryError, SearchUnavailable
from marketplace.agreements.csv_import import ImportFileError, plan_import
from marketplace.agreements.rules import check_terms
from marketplace.entrypoints.bootstrap import redis_server
from marketplace.entrypoints.commands.db import ready
from marketplace.errors import parse_day
from marketplace.log_config import configure_logging
from marketplace.services.agreements import to_domain
from marketplace.services.provider_search import ProviderHit, SearchQuery, preview, search_providers
from marketplace.settings import Settings
from matchers.reference import care_areas, regions

# Off a terminal (a pipe, CI logs) Rich would fold the tables to 80 columns; give them room.
console = Console(width=None if Console().is_terminal else 180)
err = Console(stderr=True)
agreements_app = typer.Typer(help="Care agreements (vårdavtal): register, import, and search providers.",
                             no_args_is_help=True)
INTAKE = "intake"

Region = Annotated[str, typer.Option("--as", help="the purchasing region that acts (two-digit code)")]
Wait = Annotated[float, typer.Option(help="seconds to wait for the intake's verdict (0: do not wait)")]


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _day(value: str | None, name: str) -> date | None:
    return parse_day(value, name)


def _validation_line(exc: ValidationError) -> str:
    e = exc.errors()[0]
    return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} [{e['type']}]"


# --- publishing and waiting ------------------------------------------------------------------------


async def _publish(settings: Settings, envelopes: Sequence[Envelope]) -> None:
    """Publish as the region itself, on its own ingress stream: the stream is what names the sender."""
    with redis_server(settings) as redis_url:
        try:
            async with PartyClients(redis_url, await prepare_access(settings, redis_url)) as parties:
                await parties.publish(Streams(settings.stream_prefix), envelopes)
        except AccessError as exc:
            raise _fail(f"access: {exc}") from None


async def _verdicts(db: Database, event_ids: list[str], wait: float) -> tuple[set[str], dict[str, RejectionRow],
                                                                           set[str]]:
    """(processed, refused by event id, changed) once every event is processed or `wait` is over."""
    deadline = time.monotonic() + wait
    while True:
        async with db.session() as session:
            processed = set((await session.exec(select(ProcessedEventRow.event_id).where(
                ProcessedEventRow.consumer == INTAKE, col(ProcessedEventRow.event_id).in_(event_ids)))).all())
            refused = {r.event_id or "": r for r in (await session.exec(select(RejectionRow).where(
                col(RejectionRow.event_id).in_(event_ids)))).all()}
            changed = set((await session.exec(select(AgreementVersionRow.event_id).where(
                col(AgreementVersionRow.event_id).in_(event_ids)))).all())
        if len(processed) == len(event_ids) or time.monotonic() >= deadline:
            return processed, refused, changed
        await asyncio.sleep(0.2)


async def _send_one(settings: Settings, payload: Payload, producer: str, wait: float, what: str) -> int:
    envelope = new_envelope(payload, producer=producer, event_id=uuid.uuid4())
    await _publish(settings, [envelope])
    eid = str(envelope.event_id)
    console.print(f"published {envelope.type} as region {producer} (event {eid})")
    if not wait:
        return 0
    db = Database.of(settings)
    try:
        await ready(db, settings)
        processed, refused, changed = await _verdicts(db, [eid], wait)
    finally:
        await db.dispose()
    if eid in refused:
        r = refused[eid]
        console.print(f"[red]refused[/red]: {r.field} ({r.rule}): {r.message}")
        return 1
    if eid not in processed:
        console.print("[yellow]no verdict yet[/yellow]: are the workers running (`nvf run`)?")
        return 0
    console.print(f"{what}" if eid in changed else "nothing changed (it already stood so)")
    return 0


# --- changes ------------------------------------------------------------------------------------------


@agreements_app.command("create")
def create(
    as_: Region,
    agreement_id: Annotated[str, typer.Option("--id", help="the agreement's id (avtals-id), unique")],
    provider: Annotated[str, typer.Option(help="the providing region (two-digit code)")],
    unit_hsa_id: Annotated[str, typer.Option(help="HSA-id of the performing unit, e.g. SE2321000016-A1B2C")],
    unit_name: Annotated[str, typer.Option(help="the performing unit's name")],
    care_area: Annotated[list[str], typer.Option(help="care-area code(s): " + ", ".join(care_areas()))],
    valid_from: Annotated[str, typer.Option(help="first day of validity (YYYY-MM-DD)")],
    region_contact: Annotated[str, typer.Option(help="the contracting region's contact function")],
    price_sek: Annotated[float, typer.Option(help="price per patient (SEK)")],
    valid_to: Annotated[str | None, typer.Option(help="last day of validity; default: until ended")] = None,
    price_terms: Annotated[str, typer.Option(help="price terms in words")] = "",
    unit_phone: Annotated[str | None, typer.Option()] = None,
    unit_email: Annotated[str | None, typer.Option()] = None,
    unit_address: Annotated[str, typer.Option()] = "",
    region_phone: Annotated[str | None, typer.Option()] = None,
    region_email: Annotated[str | None, typer.Option()] = None,
    wait: Wait = 10.0,
) -> None:
    """Draft an agreement as the purchasing region (`--as`); `register` makes it count."""
    settings = _settings()
    try:
        terms = AgreementTerms(
            provider=provider, unit_hsa_id=unit_hsa_id, unit_name=unit_name, care_areas=tuple(care_area),
            valid_from=_day(valid_from, "--valid-from"), valid_to=_day(valid_to, "--valid-to"), price_sek=price_sek,
            price_terms=price_terms,
            unit_contact=Contact(name=unit_name, phone=unit_phone, email=unit_email, address=unit_address),
            region_contact=Contact(name=region_contact, phone=region_phone, email=region_email))
        payload = AgreementDrafted(agreement_id=agreement_id, purchaser=as_, terms=terms)
    except ValidationError as exc:
        raise _fail(_validation_line(exc)) from None
    found = check_terms(as_, terms)
    if found:
        raise _fail(f"{found[0].field}: {found[0].message} [{found[0].rule}]")
    code = asyncio.run(_send_one(settings, payload, as_, wait, f"draft {agreement_id} saved; "
                                 f"see it with `nvf agreements preview {agreement_id}`"))
    raise typer.Exit(code)


@agreements_app.command("register")
def register_cmd(
    agreement_id: Annotated[str, typer.Argument(help="the draft's id")],
    as_: Region,
    wait: Wait = 10.0,
) -> None:
    """Register a draft: from now on it counts for matching and shows in search (inside its validity)."""
    settings = _settings()
    try:
        payload = AgreementRegistered(agreement_id=agreement_id, purchaser=as_)
    except ValidationError as exc:
        raise _fail(_validation_line(exc)) from None
    raise typer.Exit(asyncio.run(_send_one(settings, payload, as_, wait, f"agreement {agreement_id} registered")))


@agreements_app.command("end")
def end_cmd(
    agreement_id: Annotated[str, typer.Argument(help="the agreement's id")],
    as_: Region,
    on: Annotated[str | None, typer.Option(help="the day it stops counting (YYYY-MM-DD); default today")] = None,
    reason: Annotated[str, typer.Option(
        help="why, as a code: expired, renegotiated, terminated, replaced or other")] = "other",
    wait: Wait = 10.0,
) -> None:
    """End a registered agreement: from `--on` it no longer allows a match that requires one."""
    settings = _settings()
    try:
        payload = AgreementEnded(agreement_id=agreement_id, purchaser=as_, ended_on=_day(on, "--on") or date.today(),
                                 reason=reason)
    except ValidationError as exc:
        raise _fail(_validation_line(exc)) from None
    raise typer.Exit(asyncio.run(_send_one(settings, payload, as_, wait,
                                           f"agreement {agreement_id} ends on {payload.ended_on}")))


@agreements_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="the region's export: semicolon-separated UTF-8 (BOM or not)")],
    as_: Region,
    wait: Wait = 30.0,
) -> None:
    """Import a region's agreements file; run it again and nothing changes, change a row and that
    agreement gets a new version. Bad rows are listed with line, column and rule; the rest imports."""
    settings = _settings()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"{file}: cannot read it ({exc.strerror})") from None
    try:
        plan = plan_import(data, as_)
    except ImportFileError as exc:
        raise _fail(f"{file}: {exc}") from None
    ids = [str(r.envelope.event_id) for r in plan.rows]
    refused: dict[str, RejectionRow] = {}
    processed: set[str] = set()
    changed: set[str] = set()
    if plan.rows:
        async def go() -> tuple[set[str], dict[str, RejectionRow], set[str]]:
            db = Database.of(settings)
            try:
                await ready(db, settings)
                # Rows imported before (the same content, so the same event id) are unchanged now.
                before, _, _ = await _verdicts(db, ids, 0)
                await _publish(settings, [r.envelope for r in plan.rows])
                if not wait:
                    return set(), {}, set()
                processed, refused, changed = await _verdicts(db, ids, wait)
                return processed, refused, changed - before
            finally:
                await db.dispose()

        processed, refused, changed = asyncio.run(go())
    table = Table(title=f"{file.name}: {len(plan.rows) + len(plan.problems)} rows", title_justify="left")
    for heading in ("line", "agreement", "outcome"):
        table.add_column(heading)
    outcomes: list[tuple[int, str, str]] = []
    for row in plan.rows:
        eid = str(row.envelope.event_id)
        if eid in refused:
            r = refused[eid]
            outcome = f"[red]refused[/red]: {r.field} ({r.rule}): {r.message}"
        elif eid in changed:
            outcome = "[green]imported[/green] (new version)"
        elif eid in processed:
            outcome = "unchanged"
        else:
            outcome = "[yellow]sent, no verdict yet[/yellow] (are the workers running?)"
        outcomes.append((row.line, row.agreement_id, outcome))
    for p in plan.problems:
        outcomes.append((p.line, "", f"[red]bad row[/red]: column {p.column}: {p.message} [{p.rule}]"))
    for line, agreement_id, outcome in sorted(outcomes):
        table.add_row(str(line), agreement_id, outcome)
    console.print(table)
    imported = sum(1 for r in plan.rows if str(r.envelope.event_id) in changed)
    console.print(f"{imported} imported or updated, {len(processed) - imported - len(refused)} unchanged, "
                  f"{len(plan.problems) + len(refused)} bad")
    raise typer.Exit(1 if plan.problems or refused else 0)


# --- reading ------------------------------------------------------------------------------------------


def _contact(c: Contact | None, *, address: bool = True, unless_named: str = "") -> str:
    if c is None:
        return "-"
    name = "" if c.name == unless_named else c.name  # a unit's contact is usually the unit itself
    return "\n".join(x for x in (name, c.phone, c.email, c.address if address else "") if x) or "-"


def _validity(start: date | None, end: date | None) -> str:
    if start is None:
        return "open-ended"
    return f"{start} – {end or 'until ended'}"


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}".replace(",", " ")


def hits_table(hits: Sequence[ProviderHit], my_region: str | None, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    for heading, justify in (("#", "right"), ("care area", "left"), ("performing unit", "left"),
                             ("providing region", "left"),
                             (f"agreement with {my_region}" if my_region else "agreements with", "left"),
                             ("valid", "left"), ("price SEK", "right"), ("unit contact", "left"),
                             ("contracting region contact", "left")):
        table.add_column(heading, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for i, h in enumerate(hits, 1):
        with_whom = ("yes" if h.with_my_region else "no") if my_region else ", ".join(h.purchasers)
        table.add_row(str(i), h.care_area_name, f"{h.unit_name}\n{h.unit_hsa_id or ''}",
                      f"{h.provider} {h.provider_name}", f"{with_whom}\n{h.agreement_id}",
                      _validity(h.valid_from, h.valid_to), _price(h.price_sek),
                      _contact(h.unit_contact, unless_named=h.unit_name), _contact(h.region_contact, address=False))
    return table


@agreements_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help='what the patient needs, in plain words: "grå starr", "knäprotes"')] = "",
    region: Annotated[str | None, typer.Option(help="your region (the care navigator's), two-digit code")] = None,
    has_agreement: Annotated[bool, typer.Option("--has-agreement",
                                                help="only units your region has an agreement with")] = False,
    provider_region: Annotated[str | None, typer.Option(help="only units of this providing region")] = None,
    unit: Annotated[str | None, typer.Option(help="only this unit: its HSA-id or part of its name")] = None,
    as_of: Annotated[str | None, typer.Option(help="agreements in force on this day (YYYY-MM-DD); default today")]
    = None,
    limit: Annotated[int, typer.Option(help="at most this many rows")] = 100,
) -> None:
    """Find performing units by care area in plain Swedish (synonyms, misspellings), region and unit."""
    settings = _settings()
    query = SearchQuery(text=text, my_region=region, provider_region=provider_region, unit=unit,
                        has_agreement=has_agreement, as_of=_day(as_of, "--as-of") or date.today(), limit=limit)

    async def go() -> Any:
        db = Database.of(settings)
        try:
            await ready(db, settings)
            async with db.session() as session:
                return await search_providers(session, query)
        finally:
            await db.dispose()

    try:
        result = asyncio.run(go())
    except SearchQueryError as exc:
        raise _fail(f"{exc.field}: {exc.message}") from None
    except SearchUnavailable as exc:
        raise _fail(str(exc), 1) from None
    if text.strip() and not result.areas:
        console.print(f'no care area matches "{text}"; known: '
                      + ", ".join(f"{a.name_sv} ({c})" for c, a in care_areas().items()))
        raise typer.Exit(1)
    meant = ", ".join(f"{care_areas()[m.care_area].name_sv} ({m.care_area})"
                      + ("" if m.exact else f', nearest word "{m.term}"') for m in result.areas)
    scope = [f"as of {query.as_of}"]
    if region:
        scope.append(f"your region {region} {regions()[region].name}")
    if has_agreement:
        scope.append(f"only units with an agreement with region {region}")
    if provider_region:
        scope.append(f"providing region {provider_region}")
    if unit:
        scope.append(f"unit {unit!r}")
    title = (f'"{text}" → {meant}' if text.strip() else "all care areas") + " — " + "; ".join(scope)
    if not result.hits:
        console.print(title)
        console.print("no performing unit found (no registered agreement in force matches)")
        return
    console.print(hits_table(result.hits, region, title))
    console.print(f"{len(result.hits)} performing unit(s)")


@agreements_app.command("preview")
def preview_cmd(
    agreement_id: Annotated[str, typer.Argument(help="the agreement (usually a draft)")],
    as_of: Annotated[str | None, typer.Option(help="the day to preview for (YYYY-MM-DD); default today")] = None,
) -> None:
    """How an agreement (a draft before it is registered) will appear to care navigators in search."""
    settings = _settings()
    day = _day(as_of, "--as-of") or date.today()

    async def go() -> Any:
        db = Database.of(settings)
        try:
            await ready(db, settings)
            async with db.session() as session:
                return await preview(session, agreement_id, day)
        finally:
            await db.dispose()

    try:
        shown = asyncio.run(go())
    except SearchUnavailable as exc:
        raise _fail(str(exc), 1) from None
    if shown is None:
        raise _fail(f"no agreement {agreement_id!r}", 1)
    a = shown.agreement
    console.print(f"[bold]preview of agreement {a.agreement_id}[/bold] ({a.status.value}, version {a.version}) "
                  f"as region {a.purchaser}'s care navigators will see it:")
    console.print(hits_table(shown.hits, a.purchaser, "search result rows"))
    for area, terms in shown.found_by.items():
        words = ", ".join(f'"{t.term}"' for t in terms) or "(none)"
        console.print(f"{care_areas()[area].name_sv} ({area}) is found by: {words}")
    for note in shown.notes:
        console.print(f"[yellow]note[/yellow]: {note}")


@agreements_app.command("list")
def list_cmd(
    region: Annotated[str | None, typer.Option(help="only agreements this region buys or provides under")] = None,
    status: Annotated[str | None, typer.Option(help="draft, registered or ended")] = None,
) -> None:
    """The agreements in the store, with their status and validity."""
    settings = _settings()
    if status is not None and status not in ("draft", "registered", "ended"):
        raise _fail(f"--status: {status!r} is not one of draft, registered, ended")

    async def go() -> list[AgreementRow]:
        db = Database.of(settings)
        try:
            await ready(db, settings)
            async with db.session() as session:
                query = select(AgreementRow).order_by(col(AgreementRow.agreement_id))
                if region:
                    query = query.where((AgreementRow.purchaser == region) | (AgreementRow.provider == region))
                if status:
                    query = query.where(AgreementRow.status == status)
                return list((await session.exec(query)).all())
        finally:
            await db.dispose()

    rows = asyncio.run(go())
    if not rows:
        console.print("no agreements")
        return
    table = Table(title=f"{len(rows)} agreement(s)", title_justify="left")
    for heading in ("agreement", "status", "v", "purchaser", "provider", "unit", "care areas", "valid", "ended on",
                    "price SEK"):
        table.add_column(heading, overflow="fold")
    for r in rows:
        table.add_row(r.agreement_id, r.status, str(r.version), r.purchaser, r.provider,
                      f"{r.unit_name or '-'}\n{r.unit_hsa_id or ''}", ", ".join(r.care_areas),
                      _validity(r.valid_from, r.valid_to), str(r.ended_on or ""), _price(r.price_sek))
    console.print(table)


@agreements_app.command("show")
def show(agreement_id: Annotated[str, typer.Argument(help="the agreement's id")]) -> None:
    """One agreement: its terms and contacts, and the timeline of its versions."""
    settings = _settings()

    async def go() -> tuple[AgreementRow | None, list[AgreementVersionRow]]:
        db = Database.of(settings)
        try:
            await ready(db, settings)
            async with db.session() as session:
                row = await session.get(AgreementRow, agreement_id)
                versions = (await session.exec(select(AgreementVersionRow).where(
                    AgreementVersionRow.agreement_id == agreement_id).order_by(col(AgreementVersionRow.version)))).all()
                return row, list(versions)
        finally:
            await db.dispose()

    row, versions = asyncio.run(go())
    if row is None:
        raise _fail(f"no agreement {agreement_id!r}", 1)
    a = to_domain(row)
    details = Table(show_header=False, title=f"agreement {a.agreement_id}", title_justify="left")
    t = a.terms
    for key, value in (
        ("status", f"{a.status.value} (version {a.version})" + (f", ended on {a.ended_on}" if a.ended_on else "")),
        ("purchasing region", f"{a.purchaser} {regions()[a.purchaser].name}"),
        ("providing region", f"{a.provider} {regions()[a.provider].name}"),
        ("performing unit", f"{t.unit_name} ({t.unit_hsa_id})" if t else "-"),
        ("care areas", ", ".join(f"{care_areas()[c].name_sv} ({c})" for c in a.care_areas)),
        ("valid", _validity(a.valid_from, a.valid_to)),
        ("price", f"{_price(t.price_sek)} SEK per patient" + (f"; {t.price_terms}" if t.price_terms else "")
         if t else "-"),
        ("unit contact", _contact(t.unit_contact if t else None)),
        ("contracting region contact", _contact(t.region_contact if t else None)),
    ):
        details.add_row(key, value)
    console.print(details)
    timeline = Table(title="versions", title_justify="left")
    for heading in ("v", "event", "status", "by", "at", "reason", "event id"):
        timeline.add_column(heading, overflow="fold")
    for v in versions:
        timeline.add_row(str(v.version), v.event_type, v.status, v.producer,
                         v.occurred_at.isoformat(timespec="seconds"), v.reason, v.event_id)
    console.print(timeline)


def register(app: typer.Typer) -> None:
    app.add_typer(agreements_app, name="agreements")
