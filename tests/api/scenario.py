"""A small market, as the API's clients publish it, and waits on what the workers make of it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.api.conftest import Api

AS_OF = "2026-03-02"


def offer(offer_id: str, *, capacity: int = 1, price: float = 9800, hsa: str = "SE2321000016-A1") -> dict[str, Any]:
    return {"offer_id": offer_id, "unit_hsa_id": hsa, "care_area": "cataract", "capacity": capacity,
            "window_start": "2026-03-02", "window_end": "2026-04-30", "price_sek": price}


def request(request_id: str, refs: list[str], *, waiting_since: str = "2025-12-20") -> dict[str, Any]:
    return {"request_id": request_id, "care_area": "cataract", "window_start": "2026-03-02",
            "window_end": "2026-06-30", "patients": [{"case_ref": r, "waiting_since": waiting_since} for r in refs]}


async def wait_for(check: Any, *, timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll `check()` (async) until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def clear(api: Api, round_id: str, care_area: str = "cataract") -> dict[str, Any]:
    """The operator asks for a round through the API; returns its totals once it is done."""
    response = await api.post("operator", "/v1/clearing-rounds",
                              {"round_id": round_id, "care_area": care_area, "as_of": AS_OF})
    assert response.status_code == 202, response.text

    async def done() -> Any:
        r = await api.get("operator", f"/v1/clearing-rounds/{round_id}")
        return r.json() if r.status_code == 200 else None

    totals = await wait_for(done, what=f"round {round_id}")

    async def matched() -> Any:
        # The round's proposals reach the cases through the lifecycle; wait until none is pending there.
        r = await api.get("operator", "/v1/cases", params={"state": "on_book"})
        m = await api.get("operator", "/v1/matches")
        proposed = {x["case_ref"] for x in m.json()["items"] if x["round_id"] == round_id}
        cases = await api.get("operator", "/v1/cases")
        held = {c["case_ref"] for c in cases.json()["items"] if c["state"] != "on_book"}
        return r.status_code == 200 and proposed <= held

    await wait_for(matched, what=f"round {round_id}'s matches on the cases")
    return dict(totals)
