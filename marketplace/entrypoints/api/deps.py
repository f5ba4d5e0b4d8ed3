"""What every route shares (the app's state) and the dependencies that authenticate and rate-limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from marketplace.adapters.database import Database
from marketplace.entrypoints.api.channel import Channel
from marketplace.entrypoints.api.problems import Problem
from marketplace.entrypoints.api.ratelimit import ClientRate
from marketplace.entrypoints.api.tokens import (
    Caller,
    ClaimsRefused,
    EmbeddedIssuer,
    TokenRefused,
    Verifier,
)
from marketplace.services import api_clients
from marketplace.settings import Settings


@dataclass
class ApiState:
    settings: Settings
    db: Database
    verifier: Verifier
    issuer: EmbeddedIssuer | None
    rate: ClientRate
    channel: Channel | None = None
    # Health: the workers this process runs (`workers.app.Running`) and the admin connection to
    # Redis (the router's broker).
    runtime: Any = None
    workers: Any = None
    broker: Any = None
    roles: tuple[str, ...] = ()
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def bus(self) -> Channel:
        """The callers' channels, set up by the app's lifespan."""
        if self.channel is None:
            raise RuntimeError("the API's lifespan has not started")
        return self.channel


def state(request: Request) -> ApiState:
    return request.app.state.nvf


State = Annotated[ApiState, Depends(state)]
_bearer = HTTPBearer(auto_error=False, description="a token from /oauth/token (or the configured OIDC issuer)")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nvf"'}


async def caller(request: Request, st: State,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The authenticated caller, from its token alone; 401 without a valid one, 403 for claims that
    name no organisation this marketplace serves."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Problem(401, "unauthenticated", "a bearer token is required", headers=_CHALLENGE)
    try:
        who = await st.verifier.verify(credentials.credentials[:8192])
    except TokenRefused:
        raise Problem(401, "unauthenticated", "the token is invalid or expired",
                      headers={"WWW-Authenticate": 'Bearer realm="nvf", error="invalid_token"'}) from None
    except ClaimsRefused as exc:
        raise Problem(403, "forbidden", f"the token's organisation is not served here: {exc}") from None
    if who.embedded:
        async with st.db.session() as session:
            if not await api_clients.is_active(session, who.client_id):
                raise Problem(401, "unauthenticated", "the client is revoked",
                              headers={"WWW-Authenticate": 'Bearer realm="nvf", error="invalid_token"'})
    retry_after = await st.rate.take(who.client_id)
    if retry_after is not None:
        raise Problem(429, "rate-limited", f"more than {st.settings.api_rate} requests from this client",
                      headers={"Retry-After": str(retry_after)})
    # Kept for the audit of a write refused before its route ran (a body that does not parse).
    request.state.caller = who
    return who


Who = Annotated[Caller, Depends(caller)]


def region_of(who: Caller) -> str:
    """The caller's region, for what only a region may do (the operator may only issue operator commands)."""
    if who.role != "region" or who.region is None:
        raise Problem(403, "forbidden", "only a region may do this; the operator may read and issue operator "
                                        "commands (cancel, close)")
    return who.region
