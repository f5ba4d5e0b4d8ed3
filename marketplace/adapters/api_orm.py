"""Tables of the region API: its clients, the idempotency keys it has seen, and its audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer
from sqlmodel import Field, SQLModel

from marketplace.adapters.orm import utcnow


class ApiClientRow(SQLModel, table=True):
    """A system allowed to ask for tokens (OAuth2 client credentials). Only a hash of the secret is kept."""

    __tablename__ = "api_clients"
    client_id: str = Field(primary_key=True, max_length=64)
    secret_hash: str = Field(max_length=256)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    region: str | None = Field(default=None, max_length=2)
    org_number: str | None = Field(default=None, max_length=11)
    hsa_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class IdempotencyRow(SQLModel, table=True):
    """One client's Idempotency-Key: the request it first came with, and, once done, the response."""

    __tablename__ = "api_idempotency_keys"
    client_id: str = Field(primary_key=True, max_length=255)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    state: str = Field(max_length=16)  # in_flight | completed
    status_code: int | None = None
    body: dict[str, object] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    headers: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)


class AuditRow(SQLModel, table=True):
    """Every write through the API: who (organisation, role, client), what, when, and how it ended."""

    __tablename__ = "api_audit"
    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"),
                                                           primary_key=True, autoincrement=True))
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True), index=True)
    client_id: str = Field(max_length=255, index=True)
    role: str = Field(max_length=16)
    region: str | None = Field(default=None, max_length=2)
    org_number: str | None = Field(default=None, max_length=11)
    hsa_id: str | None = Field(default=None, max_length=64)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=255)
    event_id: str | None = Field(default=None, max_length=36)
    status_code: int
    outcome: str = Field(max_length=500)
