"""The search vocabulary: the words care navigators use for each care area (names, lay terms and
synonyms, diagnosis and procedure codes), shipped with the package in `vocabulary.csv`."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from matchers.reference import care_areas

_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Term:
    care_area: str
    term: str
    kind: str  # name, synonym or code
    source: str


@cache
def vocabulary() -> tuple[Term, ...]:
    text = resources.files("marketplace.agreements").joinpath("vocabulary.csv").read_text(encoding="utf-8")
    terms = tuple(Term(r["care_area"], r["term"], r["kind"], r["source"])
                  for r in csv.DictReader(io.StringIO(text), delimiter=";"))
    unknown = {t.care_area for t in terms} - set(care_areas())
    if unknown:  # the shipped files disagree: a packaging defect, not a user's mistake
        raise RuntimeError(f"vocabulary.csv names unknown care areas {sorted(unknown)}")
    return terms


def terms_of(care_area: str) -> list[Term]:
    return [t for t in vocabulary() if t.care_area == care_area]


def padded(text: str) -> str:
    """Each word lower-cased and padded the way pg_trgm pads it (two spaces before, one after), so
    that SQLite's trigram tokenizer also sees a word's beginning and end: a misspelt short word
    ("brack" for "bråck") then still shares trigrams with the right term."""
    return "".join(f"  {w.lower()} " for w in _WORD.findall(text))


def trigrams(text: str) -> list[str]:
    """The distinct trigrams of `padded(text)`, in order: the pieces of a fuzzy FTS5 query."""
    p = padded(text)
    seen: dict[str, None] = {}
    for i in range(len(p) - 2):
        gram = p[i:i + 3]
        if gram.strip():
            seen.setdefault(gram, None)
    return list(seen)
