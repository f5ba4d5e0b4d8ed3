"""One envelope for every event on the bus.

`event_id` is chosen once by the producer and is the same on every redelivery: consumers key
their idempotency on it (FastStream's own message id changes on each delivery).
"""

from __future__ import annotations

import builtins
import json
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from events.payloads import PAYLOAD_TYPES, Payload

P = TypeVar("P", bound=Payload)


class EventParseError(ValueError):
    """A bus entry that is not a valid event. `field` and `rule` say what is wrong."""

    def __init__(self, field: str, rule: str, message: str, *, event_id: str | None = None,
                 event_type: str | None = None, producer: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message
        self.event_id = event_id
        self.event_type = event_type
        self.producer = producer


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    type: str
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=64, description="region code or worker name")
    correlation_id: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any]

    def parsed(self) -> Payload:
        """The typed payload; raises EventParseError naming the field and the rule."""
        cls = PAYLOAD_TYPES[self.type]
        try:
            return cls.model_validate(self.payload)
        except ValidationError as exc:
            raise _parse_error(exc, prefix="payload", envelope=self) from exc

    def payload_as(self, cls: builtins.type[P]) -> P:
        if self.type != cls.TYPE:
            raise TypeError(f"event {self.event_id} is {self.type}, not {cls.TYPE}")
        return cls.model_validate(self.payload)

    def to_json(self) -> str:
        return self.model_dump_json()


def new_envelope(payload: Payload, *, producer: str, correlation_id: str | None = None,
                 event_id: uuid.UUID | None = None, occurred_at: datetime | None = None) -> Envelope:
    eid = event_id or uuid.uuid4()
    return Envelope(
        event_id=eid,
        type=payload.TYPE,
        schema_version=payload.VERSION,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id or str(eid),
        payload=payload.model_dump(mode="json"),
    )


def stable_event_id(*parts: object) -> uuid.UUID:
    """The same id for the same logical event, however often it is produced (retries, sweeps)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "nvf:" + "/".join(str(p) for p in parts))


def parse_envelope(raw: bytes | str | dict[str, Any]) -> tuple[Envelope, Payload]:
    """Parse a raw bus entry into its envelope and typed payload, or raise EventParseError."""
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventParseError("body", "json", f"not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise EventParseError("body", "object", "an event must be a JSON object")
    hint = {k: data.get(k) for k in ("event_id", "type", "producer")}
    event_id = str(hint["event_id"]) if hint["event_id"] is not None else None
    event_type = str(hint["type"]) if hint["type"] is not None else None
    producer = str(hint["producer"]) if hint["producer"] is not None else None
    if event_type is not None and event_type not in PAYLOAD_TYPES:
        raise EventParseError("type", "known_type", f"unknown event type {event_type!r}",
                              event_id=event_id, event_type=event_type, producer=producer)
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError as exc:
        raise _parse_error(exc, prefix="", event_id=event_id, event_type=event_type,
                           producer=producer) from exc
    cls = PAYLOAD_TYPES[envelope.type]
    if envelope.schema_version > cls.VERSION:
        raise EventParseError("schema_version", "supported_version",
                              f"schema_version {envelope.schema_version} is newer than {cls.VERSION}",
                              event_id=event_id, event_type=event_type, producer=producer)
    return envelope, envelope.parsed()


def _parse_error(exc: ValidationError, *, prefix: str, envelope: Envelope | None = None,
                 event_id: str | None = None, event_type: str | None = None,
                 producer: str | None = None) -> EventParseError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = ".".join(p for p in (prefix, loc) if p) or prefix or "body"
    if envelope is not None:
        event_id, event_type, producer = str(envelope.event_id), envelope.type, envelope.producer
    return EventParseError(field, first["type"], first["msg"], event_id=event_id,
                           event_type=event_type, producer=producer)
