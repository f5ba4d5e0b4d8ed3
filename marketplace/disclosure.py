"""Small-number suppression for published statistics: a pure function, no I/O.

A count under the threshold (default 5) could point at a person, so it is not shown. Where a total
is shown beside its parts, a single hidden part would be the total minus the others: then one more
cell of that sum (the smallest shown part, else the total) is hidden too, and so on until every sum
has either no hidden cell or at least two.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
THRESHOLD = 5


@dataclass(frozen=True)
class Sum(Generic[K]):
    """`total` is shown as the sum of `parts` (all of them keys of the table)."""

    total: K
    parts: tuple[K, ...]


def suppress(cells: Mapping[K, int], sums: Sequence[Sum[K]] = (), *, threshold: int = THRESHOLD) -> set[K]:
    """The keys of `cells` that must not be shown: every count under `threshold` (zero included, so
    a shown number is never a small one), and the complementary cells that keep each sum from
    revealing a hidden part."""
    for key, value in cells.items():
        if value < 0:
            raise ValueError(f"cell {key!r}: a count cannot be negative ({value})")
    hidden = {key for key, value in cells.items() if value < threshold}
    changed = True
    while changed:
        changed = False
        for s in sums:
            members = (s.total, *s.parts)
            unknown = [k for k in members if k in hidden]
            if len(unknown) != 1:
                continue
            shown_parts = sorted((k for k in s.parts if k not in hidden), key=lambda k: (cells[k], str(k)))
            # Hiding another part keeps the total useful; with none left, the total itself goes.
            extra = shown_parts[0] if shown_parts else s.total
            if extra not in hidden:
                hidden.add(extra)
                changed = True
    return hidden
