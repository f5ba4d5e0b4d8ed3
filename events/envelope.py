"""One envelope for every event on the bus.

`event_id` is chosen once by the producer and is the same on every redelivery: consumers key
their idempotency on it (FastStream's own message id changes on each delivery).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import rfc8785
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from events.bounds import MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_SEALED_BODY_BYTES
from events.identifiers import IdentifierError, check_event_id, check_identifier, new_event_id
from events.payloads import PAYLOAD_TYPES, Patient, Payload

# The field of a stream entry that holds the envelope (JSON), as FastStream reads and writes it.
DATA_FIELD = "__data__"

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


def _safe_event_id(value: uuid.UUID) -> uuid.UUID:
    try:
        return check_event_id(value)
    except IdentifierError as exc:
        raise PydanticCustomError(exc.rule, str(exc)) from None


def _safe_correlation_id(value: str) -> str:
    """A UUID (the default: the first event's id) or a bus id; either way no identity."""
    try:
        return str(check_event_id(uuid.UUID(value))) if len(value) == 36 else check_identifier(value)
    except ValueError as exc:
        rule = exc.rule if isinstance(exc, IdentifierError) else "uuid"
        raise PydanticCustomError(rule, "correlation_id is a UUID or an id of the bus's pattern") from None


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Annotated[uuid.UUID, AfterValidator(_safe_event_id)]
    type: str = Field(max_length=64)
    schema_version: int = Field(ge=1, le=1000)
    occurred_at: AwareDatetime
    producer: str = Field(min_length=1, max_length=64, description="region code or worker name")
    correlation_id: Annotated[str, Field(min_length=3, max_length=64), AfterValidator(_safe_correlation_id)]
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

    def digest(self) -> str:
        """SHA-256 (hex) of the event's canonical JSON (RFC 8785): what its event_id stands for.

        The content is the type, its version, the producer and the payload; `occurred_at` and the
        correlation id are when and how it was sent, so a producer that sends the same event again
        with a fresh timestamp repeats it rather than reusing its id for something else.
        Raises EventParseError for content with no canonical form (a number beyond IEEE 754)."""
        try:
            canonical = rfc8785.dumps(self.model_dump(mode="json", exclude={"occurred_at", "correlation_id"}))
        except rfc8785.CanonicalizationError:
            raise EventParseError("payload", "canonical_json", "a number lies outside what JSON can carry "
                                  "exactly", event_id=str(self.event_id), event_type=self.type) from None
        return hashlib.sha256(canonical).hexdigest()


def new_envelope(payload: Payload, *, producer: str, correlation_id: str | None = None,
                 event_id: uuid.UUID | None = None, occurred_at: datetime | None = None) -> Envelope:
    eid = event_id or new_event_id()
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
    """The same id for the same logical event, however often it is produced (retries, sweeps).

    One in about a thousand such UUIDs would hold a personnummer among its digits, which the bus
    refuses; the next of a fixed sequence is taken then, so the id stays stable."""
    name = "nvf:" + "/".join(str(p) for p in parts)
    candidate = uuid.uuid5(uuid.NAMESPACE_URL, name)
    salt = 0
    while True:
        try:
            return check_event_id(candidate)
        except IdentifierError:
            salt += 1
            candidate = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}#{salt}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_and_text_ok(data: Any) -> str | None:
    """The rule `data` (decoded JSON) breaks: too deep, or a string that is not UTF-8 (a lone
    surrogate, which JSON escapes can smuggle in and no database or stream can store)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                return "json_depth"
            for key, item in value.items():
                if not _utf8(key):
                    return "utf8"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                return "json_depth"
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _utf8(value):
            return "utf8"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_body(raw: bytes | str, *, max_bytes: int = MAX_SEALED_BODY_BYTES) -> dict[str, Any]:
    """An entry's body as a JSON object, or EventParseError(field="body") when it cannot be read at
    all: too large, not UTF-8, not JSON (NaN and Infinity are not), nested deeper than
    MAX_JSON_DEPTH, or not an object. Such an entry is poison: no sender can be told from it."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise EventParseError("body", "body_size", f"an entry is at most {max_bytes} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        data = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise EventParseError("body", "utf8", "an entry is UTF-8 text") from None
    except RecursionError:
        raise EventParseError("body", "json_depth", f"JSON nests at most {MAX_JSON_DEPTH} deep") from None
    except ValueError:
        raise EventParseError("body", "json", "an entry is one JSON object") from None
    if not isinstance(data, dict):
        raise EventParseError("body", "object", "an event must be a JSON object")
    broken = _depth_and_text_ok(data)
    if broken == "json_depth":
        raise EventParseError("body", "json_depth", f"JSON nests at most {MAX_JSON_DEPTH} deep")
    if broken == "utf8":
        raise EventParseError("body", "utf8", "every string is UTF-8 text")
    return data


def _hint(value: Any, check: Any) -> str | None:
    """A field of a refused entry, repeated to its sender only when it is known to be harmless."""
    if not isinstance(value, str):
        return None
    try:
        checked = check(value)
    except (ValueError, TypeError):
        return None
    return None if checked is None else str(checked)


_MODELS: tuple[type[BaseModel], ...] = (Envelope, Patient, *PAYLOAD_TYPES.values())
_FIELD_NAMES = frozenset({"[key]"}) | {name for cls in _MODELS for name in cls.model_fields}
_ROLES = frozenset({"operator", "scheduler", "intake", "matcher", "notifier", "timeline", "marketplace"})


def known_producer(value: str) -> str | None:
    """`value` if it has the shape of a producer (a region code or a worker role), else None."""
    return value if (len(value) == 2 and value.isdigit()) or value in _ROLES else None


def parse_envelope(raw: bytes | str | dict[str, Any]) -> tuple[Envelope, Payload]:
    """Parse a raw bus entry into its envelope and typed payload, or raise EventParseError."""
    data = decode_body(raw) if isinstance(raw, bytes | str) else raw
    if not isinstance(data, dict):
        raise EventParseError("body", "object", "an event must be a JSON object")
    event_id = _hint(data.get("event_id"), lambda v: check_event_id(uuid.UUID(v)))
    event_type = _hint(data.get("type"), lambda v: v if v in PAYLOAD_TYPES else None)
    producer = _hint(data.get("producer"), known_producer)
    if event_type is None:
        raise EventParseError("type", "known_type", "type is not an event type of the bus",
                              event_id=event_id, producer=producer)
    if not event_type.startswith("sdk.") and isinstance(raw, bytes | str) and len(raw) > MAX_BODY_BYTES:
        raise EventParseError("body", "body_size", f"an event of this type is at most {MAX_BODY_BYTES} bytes",
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
    # A location may hold a key the sender chose (an extra field, an args key): named only when
    # it is one of the contract's own field names.
    loc = ".".join(str(p) if isinstance(p, int) or p in _FIELD_NAMES else "*" for p in first["loc"])
    field = ".".join(p for p in (prefix, loc) if p) or prefix or "body"
    if envelope is not None:
        event_id, event_type = str(envelope.event_id), envelope.type
        producer = known_producer(envelope.producer)
    return EventParseError(field, first["type"], first["msg"], event_id=event_id,
                           event_type=event_type, producer=producer)
