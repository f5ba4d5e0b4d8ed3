"""Health and readiness: Redis, the database and the workers of this process, without auth and
without any data (counts and states only)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from marketplace.entrypoints.api.deps import State

router = APIRouter(tags=["health"])


async def _redis(st: State) -> dict[str, Any]:
    try:
        ok = bool(await st.broker.ping(timeout=2)) if st.broker is not None else False
    except Exception as exc:  # any failure is "down", with its kind
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up" if ok else "down"}


async def _database(st: State) -> dict[str, Any]:
    try:
        async with asyncio.timeout(3), st.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    return {"status": "up", "kind": st.db.url.get_backend_name()}


def _workers(st: State) -> dict[str, Any]:
    workers = st.workers
    if workers is None:
        return {"status": "not_hosted", "roles": []}
    consumers = workers.consumers
    running = sum(1 for c in consumers if c.running)
    partitions = workers.partitions_held()
    healthy = running == len(consumers)
    return {"status": "up" if healthy else "degraded", "roles": list(st.roles), "consumers": len(consumers),
            "consumers_running": running, "book_partitions_held": len(partitions)}


@router.get("/health", summary="Liveness and readiness: Redis, the database and the workers")
async def health(st: State) -> JSONResponse:
    redis, database = await asyncio.gather(_redis(st), _database(st))
    workers = _workers(st)
    ready = redis["status"] == "up" and database["status"] == "up" and workers["status"] in ("up", "not_hosted")
    body = {"status": "ready" if ready else "unavailable", "redis": redis, "database": database, "workers": workers}
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})
