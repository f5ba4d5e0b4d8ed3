"""Benchmark of the care navigators' provider search: `python -m benchmarks.search [--agreements N]`.

Registers N agreements (every region buying from others, every care area) in a fresh database,
then times searches: the words as written, a word spelt one letter wrong (the near-spelling path)
and the same with "has agreement with my region". SQLite always (a temporary file); PostgreSQL too
when DATABASE_URL points at one (in a schema of its own, dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from events import AgreementRegistered, AgreementTerms, Contact, new_envelope
from marketplace.adapters.database import Database
from marketplace.log_config import configure_logging
from marketplace.services import agreements
from marketplace.services.provider_search import SearchQuery, search_providers
from matchers.reference import care_areas, regions

QUERIES = [("words as written", "grå starr", False), ("one letter off", "gråstar", False),
           ("one letter off, has agreement", "ljumskbrack", True)]
DAY = date(2026, 6, 1)


async def _fill(db: Database, count: int) -> None:
    codes, areas = list(regions()), list(care_areas())
    async with db.session() as session:
        for i in range(count):
            purchaser, provider = codes[i % len(codes)], codes[(i * 7 + 3) % len(codes)]
            if provider == purchaser:
                provider = codes[(codes.index(purchaser) + 1) % len(codes)]
            org = regions()[provider].org_number.replace("-", "")
            terms = AgreementTerms(
                provider=provider, unit_hsa_id=f"SE{org}-U{i}", unit_name=f"Enhet {i}",
                care_areas=(areas[i % len(areas)],), valid_from=date(2026, 1, 1), valid_to=date(2027, 12, 31),
                price_sek=9000 + i % 1000, unit_contact=Contact(name=f"Enhet {i}", email=f"u{i}@unit.example"),
                region_contact=Contact(name="Vårdförmedlingen"))
            payload = AgreementRegistered(agreement_id=f"B-{i}", purchaser=purchaser, terms=terms)
            await agreements.apply(session, new_envelope(payload, producer=purchaser), payload)
            if i % 500 == 499:
                await session.commit()
        await session.commit()


async def _measure(db: Database, repeats: int) -> dict[str, float]:
    found: dict[str, float] = {}
    async with db.session() as session:
        await search_providers(session, SearchQuery("katarakt", as_of=DAY))  # builds the index
        for label, words, mine in QUERIES:
            started = time.perf_counter()
            for _ in range(repeats):
                await search_providers(session, SearchQuery(words, my_region="25", has_agreement=mine, as_of=DAY))
            found[label] = (time.perf_counter() - started) / repeats * 1000
    return found


async def run(count: int, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        targets: list[tuple[str, str, str | None]] = [("SQLite (FTS5 trigram)", sqlite, None)]
        url = os.environ.get("DATABASE_URL", "")
        if url.startswith("postgresql"):
            targets.append(("PostgreSQL (FTS + pg_trgm)", url, f"nvf_bench_{uuid.uuid4().hex[:8]}"))
        for name, db_url, schema in targets:
            db = Database(db_url, schema=schema)
            await db.create_all()
            try:
                await _fill(db, count)
                results[name] = await _measure(db, repeats)
            finally:
                if schema:
                    await db.drop_schema()
                await db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agreements", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    configure_logging("console", "WARNING")
    results = asyncio.run(run(args.agreements, args.repeats))
    base = next(iter(results.values()))["words as written"]
    table = Table(title=f"provider search, {args.agreements} agreements, mean of {args.repeats} searches",
                  title_justify="left")
    for heading in ("database", "query", "ms per search", "× SQLite as written"):
        table.add_column(heading, justify="left" if heading in ("database", "query") else "right")
    for name, timings in results.items():
        for label, ms in timings.items():
            table.add_row(name, label, f"{ms:.1f}", f"{ms / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
