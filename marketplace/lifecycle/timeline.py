"""A case's timeline: two append-only hash chains, so that a changed, reordered or deleted entry
shows.

- The case's own event stream (`Chain.EVENTS`): its lifecycle events only, so an entry's version is
  the aggregate's version after that event (`CaseState.version`). Appending at any other version
  than the head's + 1 is a `StreamConflict`: another writer got there first (optimistic
  concurrency, as in event-sourcing libraries).
- Its annotations (`Chain.ANNOTATIONS`): what the bus said about the case (a message sent, a
  receipt, a patient not placed), projected beside the stream by the timeline worker, never in it.
  They are chained the same way, in a chain of their own, so they stay verifiable without ever
  moving the stream's version.

Readers merge the two by time (`merge`), each entry labelled with its chain.

Each entry's hash is SHA-256 over a canonical JSON of its content and the previous entry's hash
(64 zeros before the first). Canonical means: keys sorted, no whitespace, UTF-8, datetimes as ISO
8601 in UTC. UTC because a database may hand back the same instant in another zone (PostgreSQL
returns timestamptz in the session's zone): the hash must depend on the instant, not on how it
was written. Naive datetimes are refused (SQLite drops the zone: re-attach UTC when reading).

The chain shows any change inside it. It cannot show the loss of its newest entries, nor a
history rewritten from the first entry on with every hash recomputed, nor an entry appended with a
valid hash: for that the marketplace keeps each timeline's head (last version and hash) outside
the chain, with a keyed checkpoint of it (HMAC-SHA256 under a key that is not in the database),
and `verify_with_head` checks the chain against both.
The hash covers the chain's name too, so an entry cannot be moved from one chain to the other.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

from marketplace.lifecycle.case import CaseState, replay
from marketplace.lifecycle.events import EVENT_TYPES, CaseEvent, event_from_payload, event_payload
from marketplace.lifecycle.swedish_time import require_aware

GENESIS_HASH = "0" * 64


class Chain(StrEnum):
    EVENTS = "events"
    """The case's own event stream: lifecycle events, versioned as the aggregate is."""
    ANNOTATIONS = "annotations"
    """What the bus said about the case, a projection beside the stream."""


class StreamConflict(Exception):
    """An append at a version other than the stream head's + 1: another writer appended first.

    Read the case again and decide anew (the worker's transaction retry does exactly that)."""

    def __init__(self, case_ref: str, version: int, head_version: int) -> None:
        self.case_ref, self.version, self.head_version = case_ref, version, head_version
        super().__init__(f"case {case_ref!r}: cannot append version {version}, its event stream is at version "
                         f"{head_version} (expected {head_version + 1}): another writer appended first")


@dataclass(frozen=True)
class TimelineEntry:
    case_ref: str
    version: int
    event_id: UUID
    event_type: str
    occurred_at: datetime
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str
    chain: Chain = Chain.EVENTS
    """Which chain holds it; `version` is its place in that chain."""

    @property
    def is_annotation(self) -> bool:
        return self.chain is Chain.ANNOTATIONS


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return require_aware(value, "a datetime in a timeline entry").astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, frozenset | set):
        return sorted(value, key=str)
    raise TypeError(f"not JSON-able in a timeline entry: {type(value).__name__}")


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default, allow_nan=False)


def chain_hash(prev_hash: str, *, case_ref: str, version: int, event_id: UUID | str, event_type: str,
               occurred_at: datetime, payload: Mapping[str, Any], chain: Chain = Chain.EVENTS) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's content, its chain and the previous hash."""
    content = {
        "chain": str(chain),
        "case_ref": case_ref,
        "version": version,
        "event_id": str(event_id),
        "event_type": event_type,
        "occurred_at": require_aware(occurred_at, "occurred_at").astimezone(UTC).isoformat(),
        "payload": payload,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def _entry_hash(e: TimelineEntry) -> str:
    return chain_hash(e.prev_hash, case_ref=e.case_ref, version=e.version, event_id=e.event_id,
                      event_type=e.event_type, occurred_at=e.occurred_at, payload=e.payload, chain=e.chain)


def next_version(case_ref: str, head_version: int, version: int | None = None) -> int:
    """The version the next entry of a chain at `head_version` takes. `version` is the one the
    writer expects (the aggregate's version after its event): anything but head + 1 is a
    `StreamConflict`."""
    if version is not None and version != head_version + 1:
        raise StreamConflict(case_ref, version, head_version)
    return head_version + 1


def new_entry(entries: Sequence[TimelineEntry], *, case_ref: str, event_id: UUID, event_type: str,
              occurred_at: datetime, payload: Mapping[str, Any], chain: Chain = Chain.EVENTS,
              version: int | None = None) -> TimelineEntry:
    """The entry that follows `entries` in `chain` (version last + 1, linked to the last hash).

    Refuses an entry of another case, an event id already in the chain (appending the same event
    twice is a redelivery, which the caller should recognise and skip), a bus event in the case's
    event stream, and (`StreamConflict`) an expected `version` that is not the next one.
    """
    if entries and entries[0].case_ref != case_ref:
        raise ValueError(f"timeline of case {entries[0].case_ref!r} cannot take an entry of {case_ref!r}")
    if any(e.event_id == event_id for e in entries):
        raise ValueError(f"event {event_id} is already in the timeline of case {case_ref!r}")
    if chain is Chain.EVENTS and event_type not in EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a lifecycle event: it belongs with the case's annotations")
    version = next_version(case_ref, entries[-1].version if entries else 0, version)
    # Round-trip through canonical JSON: the stored payload is then exactly what was hashed.
    clean = json.loads(canonical_json(payload))
    prev_hash = entries[-1].hash if entries else GENESIS_HASH
    digest = chain_hash(prev_hash, case_ref=case_ref, version=version, event_id=event_id,
                        event_type=event_type, occurred_at=occurred_at, payload=clean, chain=chain)
    return TimelineEntry(case_ref, version, event_id, event_type, occurred_at, clean, prev_hash, digest, chain)


def append(entries: Sequence[TimelineEntry], new: CaseEvent, version: int | None = None) -> TimelineEntry:
    """The entry recording case event `new` after `entries` (at the aggregate's `version` after it,
    when given); the caller stores it."""
    return new_entry(entries, case_ref=new.case_ref, event_id=new.event_id, event_type=new.TYPE,
                     occurred_at=new.occurred_at, payload=event_payload(new), version=version)


def append_all(entries: Sequence[TimelineEntry], new: Iterable[CaseEvent]) -> list[TimelineEntry]:
    """The entries recording each of `new` in order (e.g. one decision's events)."""
    added: list[TimelineEntry] = []
    for event in new:
        added.append(append([*entries, *added], event))
    return added


def annotate(annotations: Sequence[TimelineEntry], *, case_ref: str, event_id: UUID, event_type: str,
             occurred_at: datetime, payload: Mapping[str, Any]) -> TimelineEntry:
    """The annotation (what the bus said about the case) that follows `annotations` in their chain."""
    return new_entry(annotations, case_ref=case_ref, event_id=event_id, event_type=event_type,
                     occurred_at=occurred_at, payload=payload, chain=Chain.ANNOTATIONS)


def merge(events: Iterable[TimelineEntry], annotations: Iterable[TimelineEntry]) -> list[TimelineEntry]:
    """A case's stream and its annotations as one history, by time; at the same instant the
    lifecycle event comes first (what the bus reports follows from it)."""
    order = {Chain.EVENTS: 0, Chain.ANNOTATIONS: 1}
    return sorted([*events, *annotations],
                  key=lambda e: (e.occurred_at.astimezone(UTC), order[e.chain], e.version))


class BreakReason(StrEnum):
    VERSION_GAP = "version_gap"
    """A version is missing, repeated or out of order (a deleted or reordered entry)."""
    BROKEN_LINK = "broken_link"
    """prev_hash is not the previous entry's hash."""
    HASH_MISMATCH = "hash_mismatch"
    """The entry's content no longer gives its hash (a changed entry)."""
    OTHER_CASE = "other_case"
    NOT_A_CASE_EVENT = "not_a_case_event"
    """A bus event in the case's own event stream, which holds lifecycle events only."""
    HEAD_MISMATCH = "head_mismatch"
    """The chain is intact but ends elsewhere than the head kept outside it (lost entries)."""
    NO_HEAD = "no_head"
    """No head was recorded outside the chain, or it carries no checkpoint."""
    CHECKPOINT_MISMATCH = "checkpoint_mismatch"
    """The head's keyed checkpoint does not match: head and chain were rewritten without the key."""


@dataclass(frozen=True)
class Head:
    """A chain's head as recorded outside it, with its keyed checkpoint."""

    version: int
    hash: str
    checkpoint: str | None


def checkpoint(key: bytes, case_ref: str, version: int, head_hash: str, chain: Chain = Chain.EVENTS) -> str:
    """HMAC-SHA256 (hex) of a chain's head, under the marketplace's key."""
    message = canonical_json({"chain": str(chain), "case_ref": case_ref, "version": version,
                              "hash": head_hash}).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    entries_checked: int
    first_broken_version: int | None = None
    reason: BreakReason | None = None
    detail: str = ""


def _first_break(e: TimelineEntry, expected_version: int, prev_hash: str, case_ref: str
                 ) -> tuple[BreakReason, str] | None:
    if e.case_ref != case_ref:
        return BreakReason.OTHER_CASE, f"entry of case {e.case_ref!r} in the timeline of {case_ref!r}"
    if e.chain is Chain.EVENTS and e.event_type not in EVENT_TYPES:
        return BreakReason.NOT_A_CASE_EVENT, f"{e.event_type!r} in the case's event stream"
    if e.version != expected_version:
        return BreakReason.VERSION_GAP, f"expected version {expected_version}, found {e.version}"
    if e.prev_hash != prev_hash:
        return BreakReason.BROKEN_LINK, (f"prev_hash {e.prev_hash[:12]}... is not the previous "
                                         f"entry's hash {prev_hash[:12]}...")
    if _entry_hash(e) != e.hash:
        return BreakReason.HASH_MISMATCH, "the entry's content does not give its hash"
    return None


def verify(entries: Sequence[TimelineEntry], expected_head: tuple[int, str] | None = None
           ) -> VerificationResult:
    """Check a whole timeline, in the order given (the storage order, by version).

    Names the first broken version (the version that should be at the broken place) and why.
    `expected_head` is (last version, last hash) kept elsewhere, to catch lost newest entries.
    """
    prev_hash = GENESIS_HASH
    for position, e in enumerate(entries):
        found = _first_break(e, position + 1, prev_hash, entries[0].case_ref)
        if found is not None:
            reason, detail = found
            return VerificationResult(False, position, position + 1, reason, detail)
        prev_hash = e.hash
    if expected_head is not None:
        head = (entries[-1].version, entries[-1].hash) if entries else (0, GENESIS_HASH)
        if head != expected_head:
            last, expected_last = head[0], expected_head[0]
            # Lost or extra entries: the first version past the shorter end; same length: the last.
            first_broken = min(last, expected_last) + 1 if last != expected_last else last
            return VerificationResult(False, len(entries), first_broken, BreakReason.HEAD_MISMATCH,
                                      f"timeline ends at version {last} ({head[1][:12]}...), "
                                      f"expected {expected_last} ({expected_head[1][:12]}...)")
    return VerificationResult(True, len(entries))


def verify_with_head(case_ref: str, entries: Sequence[TimelineEntry], head: Head | None,
                     key: bytes | None, chain: Chain = Chain.EVENTS) -> VerificationResult:
    """The chain, then the head recorded outside it, then the head's checkpoint under `key`.

    Catches what the chain alone cannot: a deleted newest entry and an entry appended with a valid
    hash (the chain no longer ends at the head), and a chain recomputed after an edit with its head
    rewritten to match (the checkpoint, which needs the key, no longer fits).
    """
    result = verify(entries)
    if not result.ok:
        return result
    if head is None and not entries and chain is Chain.ANNOTATIONS:
        return result  # nothing said about the case on the bus yet
    if head is None:
        return VerificationResult(False, len(entries), len(entries) or 1, BreakReason.NO_HEAD,
                                  "no head recorded outside the chain for this case")
    found = verify(entries, expected_head=(head.version, head.hash))
    if not found.ok:
        last = entries[-1].version if entries else 0
        what = ("newest entries missing" if last < head.version else
                "entries appended past the head" if last > head.version else "the last entry differs")
        return VerificationResult(False, found.entries_checked, found.first_broken_version, BreakReason.HEAD_MISMATCH,
                                  f"the chain ends at version {last} but the head recorded outside it is "
                                  f"version {head.version} ({what})")
    if key is None or head.checkpoint is None:
        return VerificationResult(False, len(entries), head.version, BreakReason.NO_HEAD,
                                  "the head has no checkpoint to check" if key is not None else
                                  "the marketplace's checkpoint key is not in this state directory")
    expected = checkpoint(key, case_ref, head.version, head.hash, chain)
    if not hmac.compare_digest(expected, head.checkpoint):
        return VerificationResult(False, len(entries), head.version, BreakReason.CHECKPOINT_MISMATCH,
                                  "the head's keyed checkpoint does not match: the chain and its head were "
                                  "rewritten without the marketplace's key")
    return VerificationResult(True, len(entries))


@dataclass(frozen=True)
class CaseVerification:
    """Each chain of a case checked against its head."""

    results: Mapping[Chain, VerificationResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    @property
    def broken(self) -> list[Chain]:
        return [chain for chain, r in self.results.items() if not r.ok]


def verify_case(case_ref: str, entries: Iterable[TimelineEntry], heads: Mapping[Chain, Head],
                key: bytes | None) -> CaseVerification:
    """The case's event stream and its annotations (in any order, as `merge` gives them), each
    checked as its own chain against its own head, so a break is named in the chain it is in."""
    listed = list(entries)
    return CaseVerification({
        chain: verify_with_head(case_ref, sorted((e for e in listed if e.chain is chain), key=lambda e: e.version),
                                heads.get(chain), key, chain)
        for chain in Chain})


def events_from_timeline(entries: Iterable[TimelineEntry]) -> list[CaseEvent]:
    """The case events of a case's event stream (annotations among `entries` are passed over).

    A type that is not a lifecycle event raises KeyError: skipping it silently could rebuild a
    wrong state.
    """
    found: list[CaseEvent] = []
    for e in entries:
        if e.chain is Chain.ANNOTATIONS:
            continue
        if e.event_type not in EVENT_TYPES:
            raise KeyError(f"{e.event_type!r} at version {e.version} is not a lifecycle event")
        found.append(event_from_payload(e.event_type, event_id=e.event_id, case_ref=e.case_ref,
                                        occurred_at=e.occurred_at, payload=dict(e.payload)))
    return found


def replay_timeline(entries: Iterable[TimelineEntry]) -> CaseState:
    """A case rebuilt from its event stream alone; its version is the stream's last version.
    Verify the stream first if it is not trusted."""
    return replay(events_from_timeline(entries))
