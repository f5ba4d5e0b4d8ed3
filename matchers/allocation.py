"""The result of a clearing round: one placement (or reason for none) per patient."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from json.encoder import py_encode_basestring
from pathlib import Path
from typing import Any, Literal

NotPlacedReason = Literal["no_feasible_offer", "capacity_exhausted"]
NO_FEASIBLE_OFFER: NotPlacedReason = "no_feasible_offer"
CAPACITY_EXHAUSTED: NotPlacedReason = "capacity_exhausted"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one patient goes. For a patient not placed `offer_id` is None and `reason` says why;
    the money and distance fields are then 0."""

    case_ref: str
    request_id: str
    offer_id: str | None
    reason: NotPlacedReason | None
    cost_sek: float = 0.0
    price_sek: float = 0.0
    ancillary_cost_sek: float = 0.0
    distance_km: float = 0.0
    wait_days: int = 0

    @property
    def placed(self) -> bool:
        return self.offer_id is not None

    def to_row(self) -> dict[str, Any]:
        """The JSON Lines row: the contract's four keys first, then the extras."""
        return {
            "case_ref": self.case_ref,
            "request_id": self.request_id,
            "offer_id": self.offer_id,
            "reason": self.reason,
            "cost_sek": self.cost_sek,
            "price_sek": self.price_sek,
            "ancillary_cost_sek": self.ancillary_cost_sek,
            "distance_km": self.distance_km,
            "wait_days": self.wait_days,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Placement:
        return cls(
            case_ref=row["case_ref"],
            request_id=row["request_id"],
            offer_id=row["offer_id"],
            reason=row["reason"],
            cost_sek=float(row.get("cost_sek", 0.0)),
            price_sek=float(row.get("price_sek", 0.0)),
            ancillary_cost_sek=float(row.get("ancillary_cost_sek", 0.0)),
            distance_km=float(row.get("distance_km", 0.0)),
            wait_days=int(row.get("wait_days", 0)),
        )


@dataclass(frozen=True)
class Allocation:
    """Placements in scenario order (requests in order, their patients in order)."""

    placements: tuple[Placement, ...]
    policy: str = "optimal"

    def __iter__(self) -> Iterator[Placement]:
        return iter(self.placements)

    def __len__(self) -> int:
        return len(self.placements)

    @property
    def patients(self) -> int:
        return len(self.placements)

    @cached_property
    def placed(self) -> int:
        return sum(1 for p in self.placements if p.offer_id is not None)

    @cached_property
    def wait_days(self) -> int:
        """Sum of the wait days of the placed patients (objective 2)."""
        return sum(p.wait_days for p in self.placements if p.offer_id is not None)

    @cached_property
    def procedure_cost_sek(self) -> float:
        return _money(p.price_sek for p in self.placements)

    @cached_property
    def ancillary_cost_sek(self) -> float:
        return _money(p.ancillary_cost_sek for p in self.placements)

    @property
    def total_cost_sek(self) -> float:
        return round(self.procedure_cost_sek + self.ancillary_cost_sek, 2)

    def by_case_ref(self) -> dict[str, Placement]:
        return {p.case_ref: p for p in self.placements}

    def rows(self) -> list[dict[str, Any]]:
        return [p.to_row() for p in self.placements]

    def to_jsonl(self, path: str | Path) -> None:
        """Write one JSON line per patient (the caller decides where; see the CLI for atomicity).

        Byte for byte what `json.dumps(p.to_row(), ensure_ascii=False)` writes per line, formatted
        from one template: 50 000 `json.dumps` calls cost more than the solve of a large book."""
        with Path(path).open("w", encoding="utf-8") as out:
            out.writelines(map(_jsonl_line, self.placements))

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]], policy: str = "unknown") -> Allocation:
        return cls(tuple(Placement.from_row(r) for r in rows), policy)

    @classmethod
    def from_jsonl(cls, path: str | Path, policy: str = "unknown") -> Allocation:
        with Path(path).open(encoding="utf-8") as lines:
            return cls.from_rows((json.loads(line) for line in lines if line.strip()), policy)


_LINE = ('{"case_ref": %s, "request_id": %s, "offer_id": %s, "reason": %s, "cost_sek": %r, "price_sek": %r, '
         '"ancillary_cost_sek": %r, "distance_km": %r, "wait_days": %d}\n')


def _text(value: str | None) -> str:
    # `json.dumps(..., ensure_ascii=False)` quotes strings with this very function.
    return "null" if value is None else _quote(value)


_quote = getattr(json.encoder, "c_encode_basestring", None) or py_encode_basestring


def _jsonl_line(p: Placement) -> str:
    # %r of an int or a float is its repr, which is how json writes them (a price may be the int
    # the scenario gave); the amounts are finite, so json's NaN/Infinity spellings never arise.
    return _LINE % (_quote(p.case_ref), _quote(p.request_id), _text(p.offer_id), _text(p.reason),
                    p.cost_sek, p.price_sek, p.ancillary_cost_sek, p.distance_km, p.wait_days)


def _money(amounts: Iterable[float]) -> float:
    # Summed in öre so that 50 000 float additions do not drift.
    return sum(round(a * 100) for a in amounts) / 100
