"""`nvf timeline CASE_REF`: one case's history, readable, with its hash chain checked on request."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from marketplace.adapters.database import Database
from marketplace.lifecycle.timeline import TimelineEntry, verify
from marketplace.services.timeline import load_timeline
from marketplace.settings import Settings


def describe_entry(entry: TimelineEntry) -> str:
    p = entry.payload
    match entry.event_type:
        case "case.state_changed":
            text = f"{p.get('from_state')} → {p.get('to_state')}"
            return f"{text}: {p['reason']}" if p.get("reason") else text
        case "match.proposed":
            return (f"matched with offer {p['offer_id']} at {p['unit_hsa_id']} (region {p['providing_region']}), "
                    f"{p['price_sek']:.0f} SEK + {p['ancillary_cost_sek']:.0f} SEK travel, {p['distance_km']} km")
        case "patient.not_placed":
            return f"not placed in round {p['round_id']}: {p['reason']}"
        case "message.sent":
            return f"{p['message_type']} sent to {p['recipient']} ({p.get('recipient_address') or '-'})"
        case "receipt.received":
            detail = f" {p.get('code')} {p.get('detail')}" if p.get("code") else ""
            return f"receipt {p['status']}{detail} for message {p['message_id']}"
    return json.dumps(p, ensure_ascii=False)[:200]


async def show_timeline(settings: Settings, case_ref: str, *, console: Console, check: bool = False,
                        as_json: bool = False) -> int:
    db = Database(settings.effective_database_url, schema=settings.db_schema)
    try:
        async with db.session() as session:
            entries = await load_timeline(session, case_ref)
    finally:
        await db.dispose()
    if not entries:
        console.print(f"[red]no timeline for case {case_ref!r}[/red] (database: {settings.describe()['database']})")
        return 1
    if as_json:
        for e in entries:
            print(json.dumps({"version": e.version, "event_id": str(e.event_id), "event_type": e.event_type,
                              "occurred_at": e.occurred_at.isoformat(), "payload": e.payload,
                              "prev_hash": e.prev_hash, "hash": e.hash}, ensure_ascii=False))
    else:
        table = Table(title=f"timeline of {case_ref}", title_justify="left")
        table.add_column("v", justify="right")
        table.add_column("when (UTC)")
        table.add_column("event")
        table.add_column("what happened")
        table.add_column("hash")
        for e in entries:
            table.add_row(str(e.version), e.occurred_at.strftime("%Y-%m-%d %H:%M:%S"), e.event_type,
                          describe_entry(e), e.hash[:12])
        console.print(table)
    if check:
        return _report(console, entries)
    return 0


def _report(console: Console, entries: list[TimelineEntry]) -> int:
    result = verify(entries)
    if result.ok:
        console.print(f"[green]hash chain intact[/green]: {result.entries_checked} entries verified")
        return 0
    console.print(f"[red]hash chain BROKEN at version {result.first_broken_version}[/red]: "
                  f"{result.reason} — {result.detail}")
    return 1
