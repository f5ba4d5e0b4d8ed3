"""What `nvf serve` serves: the region API (`/v1`, `/oauth`, `/docs`, `/asyncapi`, `/health`) and,
beside it, the pages for people (`/`, `/public`), which act only through that API."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from marketplace.entrypoints import web
from marketplace.entrypoints.api.app import create_api
from marketplace.settings import Settings
from workers.app import ROLES


def create_app(settings: Settings, redis_url: str, *, roles: Sequence[str] = ROLES, sweeper: bool = True,
               sweep_interval: float = 5.0) -> FastAPI:
    """The served app; `roles` are the workers it hosts (none: the API alone, beside workers run elsewhere)."""
    app = create_api(settings, redis_url, roles=roles, sweeper=sweeper, sweep_interval=sweep_interval)
    web.install(app, redis_url)
    return app
