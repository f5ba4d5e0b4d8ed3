"""`nvf timeline CASE_REF`: one case's history, readable, with its hash chains checked on request.

The history is the case's event stream (its lifecycle events, versioned as the case is) and its
annotations (what the bus said about it), merged by time, each entry labelled with its chain;
`--verify` checks each chain against its own head and names the one that broke."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from marketplace.adapters.checkpoint_key import load_key
from marketplace.adapters.database import Database
from marketplace.entrypoints.commands.db import ready
from marketplace.lifecycle.timeline import Chain, Head, TimelineEntry, verify_case
from marketplace.services.timeline import load_heads, load_timeline
from marketplace.settings import Settings


def _when(value: object) -> str:
    return str(value)[:16].replace("T", " ")


def describe_entry(entry: TimelineEntry) -> str:
    p: dict[str, Any] = dict(entry.payload)
    match entry.event_type:
        case "case.need_identified":
            return (f"region {p.get('home_region')} needs {p.get('care_area')} (request {p.get('request_id')}), "
                    f"decided {p.get('waiting_since')}, guarantee date {p.get('guarantee_date')}")
        case "case.placed_on_book":
            return "on the book, waiting for a clearing round"
        case "case.match_held":
            m = p.get("match", {})
            return (f"slot held: offer {m.get('offer_id')} at {m.get('unit_hsa_id')} "
                    f"(region {m.get('providing_region')}), "
                    f"{m.get('price_sek')} SEK + {m.get('travel_sek')} travel + {m.get('accommodation_sek')} stay; "
                    f"provider answers by {_when(p.get('provider_answer_due'))}")
        case "case.provider_accepted_match":
            return f"provider accepted; the patient answers by {_when(p.get('patient_answer_due'))}"
        case "case.provider_declined_match" | "case.patient_declined_offer":
            return f"declined ({p.get('reason_code')}) {p.get('note') or ''}".strip()
        case "case.hold_released":
            told = ", provider told" if p.get("notify_provider") else ""
            return f"slot of offer {p.get('offer_id')} back on the book ({p.get('cause')}{told})"
        case "case.referral_sent":
            return f"referral {p.get('referral_id')} sent (encrypted) to {p.get('unit_hsa_id')}"
        case "case.offered_to_patient":
            return "offered to the patient by the home region"
        case "case.patient_accepted_offer":
            return "the patient accepted"
        case "case.referral_acknowledged":
            return f"referral {p.get('referral_id')} acknowledged by the performing unit"
        case "case.payment_recorded":
            return f"paid {p.get('amount_sek')} SEK (total {p.get('paid_total_sek')})"
        case "case.settled" | "case.closed" | "case.follow_up_recorded":
            return entry.event_type.removeprefix("case.").replace("_", " ")
        case "case.withdrawn" | "case.cancelled" | "case.expired":
            return f"{entry.event_type.removeprefix('case.')}: {p.get('reason') or ''} {p.get('note') or ''}".strip()
        case "case.care_scheduled":
            return f"care scheduled for {p.get('scheduled_for')}"
        case "case.care_performed":
            return f"care performed on {p.get('performed_on')}"
        case "case.invoiced":
            lines = (p.get("settlement") or {}).get("lines", [])
            return "invoiced: " + "; ".join(f"{ln['kind']} {ln['amount_sek']} SEK {ln['payer']} -> {ln['payee']}"
                                            for ln in lines)
        case "case.guarantee_warning_raised":
            left = p.get("days_left")
            return (f"care guarantee breached ({p.get('guarantee_date')})" if left is not None and left < 0
                    else f"{left} days left to the care-guarantee date {p.get('guarantee_date')}")
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
    db = Database.of(settings)
    try:
        await ready(db, settings)
        async with db.session() as session:
            entries = await load_timeline(session, case_ref)
            heads = await load_heads(session, case_ref)
    finally:
        await db.dispose()
    if not entries:
        console.print(f"[red]no timeline for case {case_ref!r}[/red] (database: {settings.describe()['database']})")
        return 1
    if as_json:
        for e in entries:
            print(json.dumps({"kind": _KIND[e.chain], "version": e.version, "event_id": str(e.event_id),
                              "event_type": e.event_type, "occurred_at": e.occurred_at.isoformat(),
                              "payload": e.payload, "prev_hash": e.prev_hash, "hash": e.hash}, ensure_ascii=False))
    else:
        table = Table(title=f"timeline of {case_ref}", title_justify="left")
        table.add_column("kind")
        table.add_column("v", justify="right")
        table.add_column("when (UTC)")
        table.add_column("event")
        table.add_column("what happened")
        table.add_column("hash")
        for e in entries:
            table.add_row(_KIND[e.chain], str(e.version), e.occurred_at.strftime("%Y-%m-%d %H:%M:%S"), e.event_type,
                          describe_entry(e), e.hash[:12])
        console.print(table)
    if check:
        return _report(console, case_ref, entries, heads, load_key(settings.state_dir))
    return 0


_KIND = {Chain.EVENTS: "event", Chain.ANNOTATIONS: "annotation"}
_CHAIN_NAME = {Chain.EVENTS: "event stream", Chain.ANNOTATIONS: "annotations"}


def _report(console: Console, case_ref: str, entries: list[TimelineEntry], heads: dict[Chain, Head],
            key: bytes | None) -> int:
    checked = verify_case(case_ref, entries, heads, key)
    for chain, result in checked.results.items():
        name = _CHAIN_NAME[chain]
        head = heads.get(chain)
        if result.ok:
            console.print(f"[green]hash chain intact[/green] ({name}): {result.entries_checked} entries verified, "
                          f"ending at the recorded head (version {head.version if head else 0}"
                          f"{', checkpoint valid' if head else ''})", soft_wrap=True)
        else:
            console.print(f"[red]hash chain BROKEN ({name}) at version {result.first_broken_version}[/red]: "
                          f"{result.reason} — {result.detail}", soft_wrap=True)
    return 0 if checked.ok else 1
