"""Secure messages end to end against the same crypto done bare: `python -m benchmarks.messages`.

Both sides handle the same N match notices (two messages per held match: to the providing unit
and to the home region), each sealed, delivered, opened and receipted:

- **bare**: a loop over the messages doing only the crypto the marketplace path does: compose (the
  marketplace's JWS, Ed25519, over a JWE, ECDH-ES+A256KW on X25519 and A256GCM, for the
  recipient: `notifiers.envelope`), open
  (the recipient verifies and decrypts), sign the receipt, verify the receipt. No database, no
  Redis, no marketplace.
- **marketplace**: the notifier's own handlers and adapters, in this process, on the configured
  database (DATABASE_URL; PostgreSQL for the issue's figure) and Redis (REDIS_URL, else an
  embedded one): the case events are handled in batches as the notifier's consumer hands them
  over (`Notifier.on_cases`: the notices sealed, their rows and outbox entries written in one
  transaction per batch), the outbox relay puts them on the recipients' inbox streams, every
  organisation's receiving agent (the demo's, `demo_regions.systems.Agents`) opens its inbox,
  records what it has seen and sends its receipts, and the notifier records the receipts in
  batches (`Receipts.on_receipts`), whose outbox is published again. What is left out is
  FastStream's consumer plumbing around the handlers (reading and acking the stream entries).

The clock runs from the first case event handled to the last receipt recorded. The last line is
`ratio marketplace/bare: X` (messages per second of the marketplace over those of the bare loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BATCH = 200


def _matches(n: int, run: str) -> list[dict[str, Any]]:
    from matchers.reference import regions

    codes = sorted(regions())
    out = []
    for i in range(n):
        home, provider = codes[i % len(codes)], codes[(i * 7 + 3) % len(codes)]
        org = regions()[provider].org_number.replace("-", "")
        out.append({"match_id": f"bm-{run}-{i:06d}", "round_id": f"bm-{run}", "case_ref": f"case-bm-{run}-{i:06d}",
                    "request_id": f"req-bm-{i}", "offer_id": f"off-bm-{provider}", "care_area": "cataract",
                    "requesting_region": home, "providing_region": provider,
                    "unit_hsa_id": f"SE{org}-BM{provider}", "price_sek": 9800.0, "ancillary_cost_sek": 0.0,
                    "distance_km": 0.0, "wait_days": 100})
    return out


def bare(n: int, key_dir: Path) -> float:
    """Seconds for the crypto of 2n messages, done bare."""
    from marketplace.services.directory import MARKETPLACE_ORG, Federation, with_unit
    from notifiers.envelope import compose, open_message
    from notifiers.message_types import MatchNotice
    from notifiers.provisioning import open_key_store
    from notifiers.receipts import new_receipt, sign_receipt, verify_receipt

    federation = Federation(key_dir)
    book = federation.book
    signer = federation.signer
    matches = _matches(n, "bare")
    for m in matches:
        book = with_unit(book, m["unit_hsa_id"], region_code=m["providing_region"])
    stores = {org: open_key_store(key_dir, org) for org in book.organisations if org != MARKETPLACE_ORG}
    started = time.perf_counter()
    for m in matches:
        body = MatchNotice(match_id=m["match_id"], case_ref=m["case_ref"], offer_id=m["offer_id"],
                           request_id=m["request_id"])
        for recipient, address in ((book.by_address(m["unit_hsa_id"]), m["unit_hsa_id"]),
                                   (book.by_code(m["requesting_region"]), None)):
            assert recipient is not None
            sealed = compose(body, sender=signer, recipient=recipient, recipient_address=address,
                             conversation_id=m["case_ref"], label="Matchning")
            store = stores[recipient.org_number]
            opened = open_message(sealed.to_bytes(), store, book)
            receipt = sign_receipt(new_receipt(store.organisation, message_id=opened.header.message_id,
                                               recipient_org=MARKETPLACE_ORG), store)
            verify_receipt(receipt.to_bytes(), book)
    return time.perf_counter() - started


async def marketplace(n: int, state_dir: Path, database_url: str,
                      redis_url: str) -> tuple[float, dict[str, int], dict[str, float]]:
    """Seconds for 2n messages sealed, delivered and receipted through the marketplace's code."""
    import redis.asyncio as aioredis
    from sqlmodel import col, func, select

    from demo_regions.outcome import PartyOutcome
    from demo_regions.systems import Agents, Federation
    from events import CaseStateChanged, Streams, new_envelope
    from marketplace.adapters.database import Database
    from marketplace.adapters.message_orm import SecureMessageRow
    from marketplace.adapters.orm import MatchRow
    from marketplace.adapters.outbox import OutboxRelay
    from marketplace.adapters.party_clients import PartyClients
    from marketplace.services.context import ServiceContext
    from marketplace.services.directory import key_directory
    from marketplace.services.notification import notifier, receipts

    # Consonants only: the tag goes into case refs, which must fit the bus's id pattern.
    tag = "".join("bcdfghjklmnpqrstvwxz"[b % 20] for b in uuid.uuid4().bytes[:8])
    schema = f"nvf_bench_{tag}" if database_url.startswith("postgresql") else None
    db = Database(database_url, schema=schema)
    await db.create_all()
    streams = Streams(f"nvf-bench-{tag}")
    ctx = ServiceContext(streams=streams)
    redis: Any = aioredis.from_url(redis_url)
    matches = _matches(n, tag)
    try:
        async with db.session() as session:
            await session.run_sync(lambda s: s.connection().execute(MatchRow.__table__.insert(), matches))  # type: ignore[attr-defined]
            await session.commit()
        events = [new_envelope(CaseStateChanged(case_ref=m["case_ref"], from_state="on_book",
                                                to_state="match_proposed", event_type="case.match_held",
                                                version=3, details={"match_id": m["match_id"]}),
                               producer="matcher").to_json() for m in matches]
        the_notifier = notifier(state_dir)
        _ = the_notifier.federation.signer  # keys made before the clock starts, as in a running notifier
        relay = OutboxRelay(db, redis)
        outcome = PartyOutcome()
        async with PartyClients(redis_url, None) as clients:
            parties = Federation(clients, streams, key_directory(state_dir), "0-0")
            agents = Agents(parties, outcome)
            started = time.perf_counter()
            phases: dict[str, float] = {}
            mark = started

            def phase(name: str) -> None:
                nonlocal mark
                now = time.perf_counter()
                phases[name] = phases.get(name, 0.0) + now - mark
                mark = now

            for i in range(0, len(events), BATCH):
                async with db.session() as session:
                    await the_notifier.on_cases(session, events[i:i + BATCH], ctx)
                    await session.commit()
            phase("notifier seals (on_cases)")
            await relay.flush()
            phase("relay to inboxes")
            await agents.poll()
            while await agents.poll():
                pass
            phase("agents open and receipt")
            last = {code: "0-0" for code in parties.codes}
            while True:
                read = 0
                for code in parties.codes:
                    entries = await redis.xrange(streams.secure_receipts(code), min=f"({last[code]}", count=BATCH)
                    if not entries:
                        continue
                    last[code] = entries[-1][0].decode()
                    read += len(entries)
                    async with db.session() as session:
                        await receipts(the_notifier).on_receipts(session, [f[b"__data__"] for _, f in entries], ctx)
                        await session.commit()
                if not read:
                    break
            phase("notifier records receipts (on_receipts)")
            await relay.flush()
            phase("relay receipts on")
            seconds = time.perf_counter() - started
        async with db.session() as session:
            total = (await session.exec(select(func.count()).select_from(SecureMessageRow))).one()
            answered = (await session.exec(select(func.count()).select_from(SecureMessageRow).where(
                col(SecureMessageRow.receipt_status) == "ACCEPTED"))).one()
        counts = {"messages": int(total), "accepted": int(answered), "received": outcome.messages_received}
        return seconds, counts, phases
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{streams.prefix}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await db.drop_schema()
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.messages", description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=1000, help="held matches (two messages each)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)
    from marketplace.entrypoints.bootstrap import redis_server
    from marketplace.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(state_dir=Path(tmp) / "state")
        from marketplace.log_config import configure_logging

        configure_logging(settings.log_format, "warning")
        database_url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        bare_s = bare(args.matches, Path(tmp) / "bare-keys")
        cpu = time.process_time()
        with redis_server(settings) as redis_url:
            market_s, counts, phases = asyncio.run(
                marketplace(args.matches, settings.state_dir, database_url, redis_url))
        cpu = time.process_time() - cpu
    messages = 2 * args.matches
    table = Table(title=f"secure messages sealed, delivered and receipted ({messages} messages, "
                        f"{'PostgreSQL' if database_url.startswith('postgresql') else 'SQLite'})")
    for column in ("path", "seconds", "messages/s", "ms/message"):
        table.add_column(column, justify="left" if column == "path" else "right")
    table.add_row("bare crypto loop", f"{bare_s:.2f}", f"{messages / bare_s:,.0f}", f"{1000 * bare_s / messages:.2f}")
    table.add_row("marketplace", f"{market_s:.2f}", f"{messages / market_s:,.0f}",
                  f"{1000 * market_s / messages:.2f}")
    for name, secs in phases.items():
        table.add_row(f"  {name}", f"{secs:.2f}", "", f"{1000 * secs / messages:.2f}")
    console.print(table)
    console.print(f"marketplace: {counts['messages']} message rows, {counts['accepted']} accepted by receipt, "
                  f"{counts['received']} opened by the agents; process CPU {cpu:.2f} s")
    console.print("target: >= 500 messages/s end to end on PostgreSQL")
    console.print(f"ratio marketplace/bare: {bare_s / market_s:.2f}")
    return 0 if counts["accepted"] == messages else 1


if __name__ == "__main__":
    sys.exit(main())
