"""The region API and the workers in one app and one lifecycle: FastAPI through FastStream's
FastAPI integration (`RedisRouter`), whose lifespan starts the workers, the parties' channels and
the broker, and stops them in reverse."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from faststream.redis.fastapi import RedisRouter

from events import Streams
from events.parties import SCHEDULER
from marketplace.adapters.database import Database
from marketplace.adapters.party_clients import PartyClients
from marketplace.adapters.periodic import Periodic
from marketplace.adapters.redis_users import prepare_access
from marketplace.entrypoints.api import problems, writes
from marketplace.entrypoints.api.channel import Channel
from marketplace.entrypoints.api.deps import ApiState
from marketplace.entrypoints.api.ratelimit import ClientRate
from marketplace.entrypoints.api.routes import (
    auth,
    brokering,
    cases,
    clearing,
    docs,
    health,
    matches,
    offers,
    requests,
)
from marketplace.entrypoints.api.tokens import EmbeddedIssuer, ExternalIssuer, Verifier
from marketplace.services import idempotency
from marketplace.settings import Settings
from workers.app import ROLES, running
from workers.runtime import Runtime
from workers.sweeper import DeadlineSweeper

log = structlog.get_logger(__name__)
API_VERSION = "1.0.0"
_PURGE_INTERVAL_S = 600.0

DESCRIPTION = """The regions' HTTP API to the NVF marketplace.

* **Authentication**: OAuth2 client credentials at `POST /oauth/token` (or an external OpenID
  Connect issuer's tokens, when configured); send `Authorization: Bearer <token>`. The token's
  claims name the organisation (region code, organisation number, HSA-id) and the role.
* A region sees and acts on only its own offers, requests, cases and messages; another region's
  case is a 404, like one that does not exist. The operator reads everything and may only cancel
  or close cases.
* Every `POST` needs an `Idempotency-Key` (a UUID): a retry with the same key and body returns
  the first answer; keys are kept per client for `NVF_API_IDEMPOTENCY_TTL_S` (default 24 hours).
* Reads carry an `ETag`; a case command needs `If-Match` with the case's ETag (412 when stale).
* Errors are RFC 9457 problem details (`application/problem+json`); a 422 names the field and the rule.
* Past the per-client rate (`NVF_API_RATE`, default 10/second): 429 with `Retry-After`.
* Writes go onto the bus on the caller's own ingress stream; the bus's contract is at `/asyncapi`.
"""


def _verifier(settings: Settings) -> tuple[Verifier, EmbeddedIssuer | None]:
    if settings.oidc_issuer:
        if not settings.oidc_jwks_url:
            raise ValueError("NVF_OIDC_JWKS_URL: required with NVF_OIDC_ISSUER")
        return ExternalIssuer(settings.oidc_issuer, settings.oidc_jwks_url, settings.oidc_audience), None
    issuer = EmbeddedIssuer(settings.state_dir, settings.api_token_ttl_s)
    return issuer, issuer


async def _purge_expired_keys(db: Database) -> None:
    purged = await idempotency.purge_expired(db)
    if purged:
        log.info("api.idempotency_keys_purged", count=purged)


def create_api(settings: Settings, redis_url: str, *, roles: Sequence[str] = ROLES, sweeper: bool = True,
               sweep_interval: float = 5.0) -> FastAPI:
    """The region API's app (the pages are added beside it by `entrypoints/server.py`); `roles` are
    the workers it hosts (none: the API alone, beside workers run elsewhere)."""
    verifier, issuer = _verifier(settings)
    db = Database.of(settings)
    st = ApiState(settings=settings, db=db, verifier=verifier, issuer=issuer, rate=ClientRate(settings.api_rate),
                  roles=tuple(roles))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        # `nvf serve` has brought the schema to head (or refused to start) before this runs.
        await db.ensure_schema(auto_migrate=settings.db_auto_migrate)
        # Each party (and each worker role) connects as its own Redis user; the API speaks for a
        # caller through that caller's own connection.
        credentials = await prepare_access(settings, redis_url)
        parties = PartyClients(redis_url, credentials)
        st.channel = Channel(parties, Streams(settings.stream_prefix), db, settings.api_outcome_wait_s)
        purge = Periodic("idempotency-purge", _PURGE_INTERVAL_S, lambda: _purge_expired_keys(db))
        purge.start()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(db.dispose)
            stack.push_async_callback(parties.aclose)
            if roles:
                runtime = Runtime.create(settings, redis_url, db=db, credentials=credentials)
                st.workers = await stack.enter_async_context(running(runtime, roles))
                st.runtime = runtime
                if sweeper:
                    await stack.enter_async_context(_sweeping(runtime, sweep_interval))
            log.info("api.started", roles=list(roles), access=settings.access,
                     issuer="external" if issuer is None else "embedded")
            try:
                yield
            finally:
                purge.stop()
                st.runtime = st.workers = None
        log.info("api.stopped")

    router = RedisRouter(redis_url, schema_url=None, include_in_schema=False, lifespan=lifespan,
                         logger=structlog.get_logger("faststream"), max_connections=16, **_socket_options(redis_url))
    st.broker = router.broker
    app = FastAPI(title="NVF Marketplace region API", version=API_VERSION, description=DESCRIPTION,
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.nvf = st
    problems.install(app, on_refusal=writes.audit_unrouted)
    app.middleware("http")(_request_log)
    app.include_router(router)
    for module in (auth, offers, requests, cases, matches, clearing, brokering, health, docs):
        app.include_router(module.router)
    return app


def _socket_options(redis_url: str) -> dict[str, Any]:
    """The router passes TCP socket options explicitly, which redis-py's unix-socket connection (the
    embedded Redis) refuses; FastStream's "not given" marker leaves them out, as its broker does."""
    if not redis_url.startswith("unix://"):
        return {}
    from faststream._internal.constants import EMPTY

    return {"socket_keepalive": EMPTY, "socket_keepalive_options": EMPTY, "socket_type": EMPTY}


@contextlib.asynccontextmanager
async def _sweeping(runtime: Runtime, interval_s: float) -> AsyncIterator[None]:
    scheduler = runtime.for_party(SCHEDULER) if runtime.credentials is not None else runtime
    if scheduler is not runtime:
        await scheduler.connect()
    sweeper = DeadlineSweeper(scheduler, interval_s=interval_s)
    sweeper.start()
    try:
        yield
    finally:
        await sweeper.stop()
        if scheduler is not runtime:
            await scheduler.broker.stop()


async def _request_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One log line per request (method, path, status, time), with an id the response carries."""
    request_id = uuid.uuid4().hex
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response = await call_next(request)
        log.info("api.request", method=request.method, path=request.url.path, status=response.status_code,
                 ms=round((time.perf_counter() - started) * 1000, 1))
    response.headers["X-Request-ID"] = request_id
    return response
