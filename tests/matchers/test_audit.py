"""The audit itself must catch each kind of breach, or passing it would prove nothing."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

from matchers.audit import audit_allocation
from matchers.model import Patient

from .books import book, offer, request

SCENARIO = book(
    offers=(offer(offer_id="a", capacity=1), offer(offer_id="far", region="13")),
    requests=(
        request(
            max_travel_km=900,
            patients=(Patient("c1", date(2025, 1, 1)), Patient("c2", date(2025, 2, 1))),
        ),
        request(request_id="knee", care_area="knee-replacement", patients=(Patient("k1", date(2025, 1, 1)),)),
    ),
)
GOOD: list[dict[str, Any]] = [
    {"case_ref": "c1", "request_id": "req-1", "offer_id": "a", "reason": None},
    {"case_ref": "c2", "request_id": "req-1", "offer_id": None, "reason": "capacity_exhausted"},
    {"case_ref": "k1", "request_id": "knee", "offer_id": None, "reason": "no_feasible_offer"},
]


def _audit(change: Any) -> list[str]:
    rows = copy.deepcopy(GOOD)
    change(rows)
    return audit_allocation(SCENARIO, rows)


def test_a_valid_allocation_passes() -> None:
    assert audit_allocation(SCENARIO, GOOD) == []


def test_each_breach_is_found() -> None:
    assert any("over capacity" in p for p in _audit(lambda r: r[1].update(offer_id="a", reason=None)))
    assert any("may not take far" in p for p in _audit(lambda r: r[1].update(offer_id="far", reason=None)))
    assert any("appears 2 times" in p for p in _audit(lambda r: r.append(dict(r[2]))))
    assert any("missing from the allocation" in p for p in _audit(lambda r: r.pop()))
    assert any(
        "expected 'no_feasible_offer'" in p
        for p in _audit(lambda r: r[2].update(reason="capacity_exhausted"))
    )
    assert any(
        "expected 'capacity_exhausted'" in p
        for p in _audit(lambda r: r[1].update(reason="no_feasible_offer"))
    )
    assert any(
        "placed but has reason" in p for p in _audit(lambda r: r[0].update(reason="capacity_exhausted"))
    )
    assert any("belongs to req-1" in p for p in _audit(lambda r: r[0].update(request_id="knee")))
    assert any("unknown offer" in p for p in _audit(lambda r: r[0].update(offer_id="zzz")))
    assert any("cost_sek" in p for p in _audit(lambda r: r[0].update(cost_sek=1.0)))
    assert any("missing keys" in p for p in _audit(lambda r: r[0].pop("reason")))


def test_a_free_seat_left_empty_is_a_breach_unless_not_required() -> None:
    def unplace(rows: list[dict[str, Any]]) -> None:
        rows[0].update(offer_id=None, reason="capacity_exhausted")

    assert any("has room" in p for p in _audit(unplace))
    rows = copy.deepcopy(GOOD)
    unplace(rows)
    assert audit_allocation(SCENARIO, rows, require_maximal=False) == []
