"""Entries as Redis gave them, read past FastStream's own parsing (which leans on its internals).

FastStream's parser would JSON-decode every entry of a batch, encode the list again and decode that
for the handler; and it fails, before any handler runs (and so forever), on an entry without
`__data__`, with a field name that is not UTF-8, or with a body nested thousands deep. Here each
entry is read once and what cannot be read is marked as poison, to be dead-lettered by name.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faststream.message import StreamMessage
from faststream.redis.message import FAKE_CONSUMER
from faststream.redis.message import RedisBatchStreamMessage as BatchMessage
from faststream.redis.message import RedisStreamMessage as SingleMessage
from faststream.redis.parser import BinaryMessageFormatV1

from events import EventParseError
from events.envelope import decode_body
from marketplace.adapters.dead_letters import DATA_FIELD


@dataclass
class Entry:
    id: str
    body: bytes | str
    deliveries: int = 1
    # The `__data__` field as stored, kept unchanged for the dead-letter stream (None: same as body).
    raw: bytes | str | None = None
    # Why the entry cannot be read at all (no data field, not UTF-8, not JSON, too deep): poison,
    # kept out of every transaction and dead-lettered at the delivery limit.
    poison: str | None = None


class Unreadable(ValueError):
    """An entry that no handler could read: `rule` says why; `body` is what to dead-letter."""

    def __init__(self, rule: str, body: bytes | str) -> None:
        super().__init__(rule)
        self.rule, self.body = rule, body


def entry_body(fields: Mapping[Any, Any] | None) -> bytes | str:
    """The envelope of an entry: its `__data__` field. Raises Unreadable for an entry without one,
    or with a field name that is not UTF-8 (the dead letter then keeps the fields, escaped)."""
    if not fields:
        raise Unreadable("no_data_field", b"")
    names: list[str] = []
    for key in fields:
        try:
            names.append(key.decode("utf-8") if isinstance(key, bytes) else str(key))
        except UnicodeDecodeError:
            raise Unreadable("field_name_utf8", _escaped(fields)) from None
    for name, value in zip(names, fields.values(), strict=True):
        if name == DATA_FIELD:
            return value
    raise Unreadable("no_data_field", _escaped(fields))


def _escaped(fields: Mapping[Any, Any]) -> str:
    def show(v: Any) -> str:
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
    return json.dumps({show(k): show(v) for k, v in fields.items()})


def unwrap(raw: bytes | str) -> bytes | str:
    """The payload of `__data__`: FastStream's binary format (what `broker.publish` writes) unwrapped.

    Anything else (a region's raw JSON, or bytes nobody can read) is handed on unchanged, so that
    the handler rejects it by name; FastStream's own fallback would also unwrap any JSON object
    that happens to have a "data" key, which a region's input must not be subject to.
    """
    if isinstance(raw, bytes) and raw.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):
        body, _headers = BinaryMessageFormatV1.parse(raw)
        return body
    return raw


def _all_faststream_format(entries: Sequence[Mapping[Any, Any]]) -> bool:
    for fields in entries:
        data = fields.get(DATA_FIELD.encode(), b"") if isinstance(fields, Mapping) else b""
        if not (isinstance(data, bytes) and data.startswith(BinaryMessageFormatV1.IDENTITY_HEADER)):
            return False
    return bool(entries)


async def entries_as_read(message: Any,
                           original: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """The batch as Redis gave it. FastStream's own parser would JSON-decode every entry, encode the
    list again and decode that for the handler's arguments; the handler reads the entries from the
    raw message instead, and the services parse each envelope once. Entries in FastStream's own
    format (published through the broker, as tests do) still go through its parser, which reads
    their headers (the correlation id its test broker tracks them by)."""
    # Only a batch all in FastStream's format: its parser fails on an entry without `__data__` or
    # with a field name that is not UTF-8, before any handler runs, and so forever.
    if _all_faststream_format(message.get("data") or ()):
        return await original(message)
    return BatchMessage(raw_message=message, body=b"", consumer=FAKE_CONSUMER, group=None)


async def entry_as_read(message: Any,
                         original: Callable[[Any], Awaitable[StreamMessage[Any]]]) -> StreamMessage[Any]:
    """The claimer's entry as Redis gave it: FastStream's parser would fail on the same poison
    (and its decoder would JSON-decode a body nested thousands deep) without the handler ever
    seeing the entry, so it would be claimed again and again and never dead-lettered."""
    if _all_faststream_format([message.get("data") or {}]):
        return await original(message)
    return SingleMessage(raw_message=message, body=b"", consumer=FAKE_CONSUMER, group=None)


async def not_decoded(message: StreamMessage[Any], original: Callable[[StreamMessage[Any]], Awaitable[Any]]) -> Any:
    return await original(message) if message.body else None


def read_entry(entry_id: Any, fields: Mapping[Any, Any] | None, deliveries: int = 1) -> Entry:
    """One entry as read; never raises: what cannot be read is marked as poison."""
    eid = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else str(entry_id)
    try:
        raw = entry_body(fields)
    except Unreadable as exc:
        return Entry(eid, exc.body, deliveries, poison=exc.rule)
    try:
        body = unwrap(raw)
    except Exception:
        return Entry(eid, raw, deliveries, poison="faststream_format")
    try:
        decode_body(body)
    except EventParseError as exc:
        return Entry(eid, body, deliveries, raw=None if body is raw else raw, poison=exc.rule)
    return Entry(eid, body, deliveries, raw=None if body is raw else raw)
