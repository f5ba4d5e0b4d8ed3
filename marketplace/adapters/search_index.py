"""Finding care areas from a navigator's words, with each database's own full-text search.

- PostgreSQL: full-text search with the `swedish` configuration (stemming: "starroperationer"
  finds "starroperation") and pg_trgm trigram similarity (a misspelt word still finds its term),
  over the `care_area_terms` table.
- SQLite (the embedded default): an FTS5 table with the trigram tokenizer. A query first looks
  for the words as they are (a substring match, ranked by bm25); when nothing matches, for the
  terms whose trigrams (words padded as pg_trgm pads them) overlap the query's as much as
  pg_trgm's `similarity` asks (shared / all distinct, at least its default threshold 0.3): FTS5
  finds and counts the shared trigrams, so both databases find the same near spellings.

Near spellings are near in letters, not in meaning: a compound that shares a generic part with a
term ("hjärtoperation" and "starroperation") finds that term's care area, marked as a near match
(`exact` False) so that the navigator sees which word it was taken for.

The vocabulary comes from the shipped `marketplace/agreements/vocabulary.csv` and is written to
the database on first use (and again when the shipped file changes), under a lock so that
processes and tests starting together do not trip over each other. The pg_trgm extension is
created once per database (it is database-wide: in `public`, never in a test's own schema that
is dropped afterwards), under a transaction-scoped advisory lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.agreements.vocabulary import padded, trigrams, vocabulary

# pg_trgm's own default (pg_trgm.similarity_threshold), on both databases.
SIMILARITY = 0.3
_FTS_TABLE = "care_area_terms_fts"
_LOCK_EXTENSION = 7_315_001  # advisory lock keys: arbitrary, fixed, ours
_LOCK_VOCABULARY = 7_315_002
MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class AreaMatch:
    care_area: str
    term: str  # the vocabulary term that matched best
    exact: bool  # the words themselves were found (not only a near spelling)


class SearchUnavailable(RuntimeError):
    """The database lacks what the search needs and cannot be given it by this user."""


class SearchQueryError(ValueError):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message


async def _dialect(session: AsyncSession) -> str:
    return (await session.connection()).dialect.name


async def _trgm_schema(session: AsyncSession) -> str | None:
    found = (await session.exec(text(  # type: ignore[call-overload]
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"))).first()
    return str(found[0]) if found else None


async def ensure_search_index(session: AsyncSession) -> None:
    """Make the vocabulary searchable in this database (idempotent; commits what it creates)."""
    wanted = [(t.care_area, t.term, t.kind) for t in vocabulary()]
    if await _dialect(session) == "postgresql":
        if await _trgm_schema(session) is None:
            await session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_LOCK_EXTENSION))  # type: ignore[call-overload]
            try:
                await session.exec(text("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public"))  # type: ignore[call-overload]
            except DBAPIError as exc:
                raise SearchUnavailable(
                    "the search needs PostgreSQL's pg_trgm extension and this database user may not create "
                    f"it: ask its owner to run CREATE EXTENSION pg_trgm WITH SCHEMA public ({exc.orig})") from exc
            await session.commit()
        stored = (await session.exec(text(  # type: ignore[call-overload]
            "SELECT care_area, term, kind FROM care_area_terms ORDER BY id"))).all()
        if [tuple(r) for r in stored] != wanted:
            await session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_LOCK_VOCABULARY))  # type: ignore[call-overload]
            await _refill(session, wanted, fts=False)
        return
    wanted_fts = [(area, term, kind, len(trigrams(term))) for area, term, kind in wanted]
    made = (await session.exec(text(  # type: ignore[call-overload]
        "SELECT sql FROM sqlite_master WHERE name = :t").bindparams(t=_FTS_TABLE))).first()
    have: Sequence[Any] = []
    if made is not None and "grams" not in made[0]:  # made by an older version, with other columns
        await session.exec(text(f"DROP TABLE IF EXISTS {_FTS_TABLE}"))  # type: ignore[call-overload]
    elif made is not None:
        have = (await session.exec(text(  # type: ignore[call-overload]
            f"SELECT care_area, term, kind, grams FROM {_FTS_TABLE} ORDER BY rowid"))).all()
    await session.commit()  # end the read: a write begun in a stale snapshot would fail at once (WAL)
    if [tuple(r) for r in have] == wanted_fts:
        return
    # Processes starting together may all get here: creating is idempotent, and each refill is one
    # transaction (SQLite's write lock takes them in turn), so the last leaves one whole copy.
    await session.exec(text(  # type: ignore[call-overload]
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS_TABLE} USING fts5("
        "padded, term UNINDEXED, care_area UNINDEXED, kind UNINDEXED, grams UNINDEXED, tokenize = 'trigram')"))
    await session.commit()
    await _refill(session, wanted, fts=True)


async def _refill(session: AsyncSession, wanted: list[tuple[str, str, str]], *, fts: bool) -> None:
    # SQLite: write first, so the transaction takes the write lock before it reads anything.
    # PostgreSQL: under the advisory lock, another process may have filled it while we waited.
    have = [] if fts else (await session.exec(text(  # type: ignore[call-overload]
        "SELECT care_area, term, kind FROM care_area_terms ORDER BY id"))).all()
    if [tuple(r) for r in have] != wanted:
        await session.exec(text("DELETE FROM care_area_terms"))  # type: ignore[call-overload]
        for i, (area, term, kind) in enumerate(wanted, 1):
            await session.exec(text(  # type: ignore[call-overload]
                "INSERT INTO care_area_terms (id, care_area, term, kind) VALUES (:i, :a, :t, :k)"
            ).bindparams(i=i, a=area, t=term, k=kind))
    if fts:
        await session.exec(text(f"DELETE FROM {_FTS_TABLE}"))  # type: ignore[call-overload]
        for i, (area, term, kind) in enumerate(wanted, 1):
            await session.exec(text(  # type: ignore[call-overload]
                f"INSERT INTO {_FTS_TABLE} (rowid, padded, term, care_area, kind, grams) "
                "VALUES (:i, :p, :t, :a, :k, :g)"
            ).bindparams(i=i, p=padded(term), t=term, a=area, k=kind, g=len(trigrams(term))))
    await session.commit()


def _check(query: str) -> str:
    q = " ".join(query.split())
    if not q:
        raise SearchQueryError("text", "not_empty", "give some words to search for")
    if len(q) > MAX_QUERY:
        raise SearchQueryError("text", "max_length", f"the search text is longer than {MAX_QUERY} characters")
    return q


async def match_care_areas(session: AsyncSession, query: str) -> list[AreaMatch]:
    """The care areas these words mean, best first (empty when nothing is near enough)."""
    q = _check(query)
    await ensure_search_index(session)
    if await _dialect(session) == "postgresql":
        rows = await _postgres(session, q)
    else:
        rows = await _sqlite(session, q)
    if any(exact for _, _, exact in rows):  # the words themselves were found: near spellings add noise
        rows = [r for r in rows if r[2]]
    best: dict[str, AreaMatch] = {}
    for area, term, exact in rows:  # ordered best first: keep each area's first row
        best.setdefault(area, AreaMatch(area, term, exact))
    return list(best.values())


async def _postgres(session: AsyncSession, q: str) -> list[tuple[str, str, bool]]:
    schema = await _trgm_schema(session)
    if schema is None:
        raise RuntimeError("pg_trgm is not installed")
    s = f'"{schema}"'
    sql = text(f"""
        SELECT t.care_area, t.term,
               to_tsvector('swedish', t.term) @@ plainto_tsquery('swedish', :q) AS exact,
               {s}.similarity(t.term, :q) AS sim,
               ts_rank(to_tsvector('swedish', t.term), plainto_tsquery('swedish', :q)) AS rank
        FROM care_area_terms t
        WHERE to_tsvector('swedish', t.term) @@ plainto_tsquery('swedish', :q)
           OR {s}.similarity(t.term, :q) >= :threshold
        ORDER BY exact DESC, sim DESC, rank DESC, t.id
    """).bindparams(q=q, threshold=SIMILARITY)
    return [(r[0], r[1], bool(r[2])) for r in (await session.exec(sql)).all()]  # type: ignore[call-overload]


def _phrase(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


async def _sqlite(session: AsyncSession, q: str) -> list[tuple[str, str, bool]]:
    p = padded(q)
    if len(p.strip()) >= 3:
        exact = (await session.exec(text(  # type: ignore[call-overload]
            f"SELECT care_area, term FROM {_FTS_TABLE} WHERE {_FTS_TABLE} MATCH :m "
            f"ORDER BY bm25({_FTS_TABLE}), rowid").bindparams(m=_phrase(p)))).all()
        if exact:
            return [(r[0], r[1], True) for r in exact]
    grams = trigrams(q)
    if not grams:
        return []
    # FTS5 finds the terms holding each trigram; a term is near when the shared trigrams are at least
    # the threshold of all distinct trigrams of both (pg_trgm's similarity).
    hits = " UNION ALL ".join(
        f"SELECT rowid FROM {_FTS_TABLE} WHERE {_FTS_TABLE} MATCH :g{i}" for i in range(len(grams)))
    sql = text(f"""
        WITH hits AS ({hits}), counted AS (SELECT rowid, count(*) AS n FROM hits GROUP BY rowid)
        SELECT care_area, term, counted.n * 1.0 / (:q + grams - counted.n) AS sim
        FROM {_FTS_TABLE} JOIN counted ON counted.rowid = {_FTS_TABLE}.rowid
        WHERE {_FTS_TABLE} MATCH :any AND counted.n * 1.0 / (:q + grams - counted.n) >= :threshold
        ORDER BY sim DESC, bm25({_FTS_TABLE}), {_FTS_TABLE}.rowid
    """).bindparams(any=" OR ".join(_phrase(g) for g in grams), q=len(grams), threshold=SIMILARITY,
                    **{f"g{i}": _phrase(g) for i, g in enumerate(grams)})
    return [(r[0], r[1], False) for r in (await session.exec(sql)).all()]  # type: ignore[call-overload]
