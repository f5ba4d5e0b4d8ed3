"""The hash-chained timeline: a case's own event stream (versioned as the case is) and its
annotations beside it, each appended, verified, and tampering caught in the chain it is in."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from marketplace.lifecycle import (
    GENESIS_HASH,
    BreakReason,
    CaseEvent,
    CaseStatus,
    Chain,
    StreamConflict,
    TimelineEntry,
    annotate,
    append,
    append_all,
    chain_hash,
    events_from_timeline,
    merge,
    new_entry,
    replay,
    replay_timeline,
    verify,
    verify_case,
)
from marketplace.lifecycle.timeline import Head, checkpoint
from tests.lifecycle.journey import CASE, reach


def timeline() -> tuple[list[TimelineEntry], list[CaseEvent]]:
    j = reach(CaseStatus.CLOSED)
    return append_all([], j.history), j.history


def test_entries_are_versioned_and_linked_from_a_genesis_of_zeros() -> None:
    entries, history = timeline()
    assert [e.version for e in entries] == list(range(1, len(history) + 1))
    assert entries[0].prev_hash == GENESIS_HASH == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert [e.event_id for e in entries] == [e.event_id for e in history]
    assert verify(entries).ok and verify(entries).entries_checked == len(entries)


def test_chain_hash_is_sha256_of_canonical_json_with_utc_iso_times() -> None:
    e = timeline()[0][0]
    content = {"chain": "events", "case_ref": e.case_ref, "version": 1, "event_id": str(e.event_id),
               "event_type": e.event_type, "occurred_at": e.occurred_at.astimezone(UTC).isoformat(),
               "payload": e.payload, "prev_hash": GENESIS_HASH}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert e.hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_same_instant_in_another_zone_hashes_the_same() -> None:
    entries, _ = timeline()
    e = entries[3]
    cet = e.occurred_at.astimezone(timezone(timedelta(hours=1)))
    assert chain_hash(e.prev_hash, case_ref=e.case_ref, version=e.version, event_id=e.event_id,
                      event_type=e.event_type, occurred_at=cet, payload=e.payload) == e.hash
    with pytest.raises(ValueError, match="aware"):
        chain_hash(e.prev_hash, case_ref=e.case_ref, version=e.version, event_id=e.event_id,
                   event_type=e.event_type, occurred_at=e.occurred_at.replace(tzinfo=None),
                   payload=e.payload)


def test_a_changed_payload_is_caught_at_its_version() -> None:
    entries, _ = timeline()
    e = entries[2]  # the match: its locked price
    payload = json.loads(json.dumps(e.payload))
    payload["match"]["price_sek"] = "1.00"
    entries[2] = dataclasses.replace(e, payload=payload)
    result = verify(entries)
    assert not result.ok
    assert (result.first_broken_version, result.reason) == (3, BreakReason.HASH_MISMATCH)


def test_a_changed_entry_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries, _ = timeline()
    e = entries[4]
    forged = dataclasses.replace(e, occurred_at=e.occurred_at - timedelta(days=1))
    forged = dataclasses.replace(forged, hash=chain_hash(
        forged.prev_hash, case_ref=forged.case_ref, version=forged.version, event_id=forged.event_id,
        event_type=forged.event_type, occurred_at=forged.occurred_at, payload=forged.payload))
    entries[4] = forged
    result = verify(entries)
    assert (result.first_broken_version, result.reason) == (6, BreakReason.BROKEN_LINK)


def test_reordered_entries_are_caught() -> None:
    entries, _ = timeline()
    entries[5], entries[6] = entries[6], entries[5]
    result = verify(entries)
    assert (result.first_broken_version, result.reason) == (6, BreakReason.VERSION_GAP)
    assert "expected version 6, found 7" in result.detail


def test_a_deleted_entry_is_caught_as_a_gap() -> None:
    entries, _ = timeline()
    del entries[7]
    result = verify(entries)
    assert (result.first_broken_version, result.reason) == (8, BreakReason.VERSION_GAP)


def test_renumbered_entries_after_a_deletion_break_the_link() -> None:
    entries, _ = timeline()
    del entries[7]
    entries[7:] = [dataclasses.replace(e, version=e.version - 1) for e in entries[7:]]
    result = verify(entries)
    assert (result.first_broken_version, result.reason) == (8, BreakReason.BROKEN_LINK)


def test_lost_newest_entries_need_the_head_kept_elsewhere() -> None:
    entries, _ = timeline()
    head = (entries[-1].version, entries[-1].hash)
    truncated = entries[:-2]
    assert verify(truncated).ok  # the chain alone cannot see it
    result = verify(truncated, expected_head=head)
    assert (result.first_broken_version, result.reason) == (len(entries) - 1, BreakReason.HEAD_MISMATCH)
    assert verify(entries, expected_head=head).ok


def test_state_rebuilt_from_the_timeline_equals_the_incremental_one_at_every_version() -> None:
    j = reach(CaseStatus.CLOSED)
    entries = append_all([], j.history)
    for n in range(1, len(entries) + 1):
        assert replay_timeline(entries[:n]) == replay(j.history[:n])
    assert replay_timeline(entries) == j.case
    # Through JSON, as a store would keep it.
    stored = [dataclasses.replace(e, payload=json.loads(json.dumps(e.payload))) for e in entries]
    assert replay_timeline(stored) == j.case and verify(stored).ok


def test_append_refuses_a_duplicate_event_and_another_case() -> None:
    j = reach(CaseStatus.ON_BOOK)
    entries = append_all([], j.history)
    with pytest.raises(ValueError, match="already"):
        append(entries, j.history[-1])
    other = reach(CaseStatus.NEED_IDENTIFIED).history[0].model_copy(update={"case_ref": "case-2"})
    with pytest.raises(ValueError, match="case-2"):
        append(entries, other)


KEY = b"k" * 32


def _sent(annotations: list[TimelineEntry], when: datetime, message_id: str = "msg-1") -> TimelineEntry:
    return annotate(annotations, case_ref=CASE, event_id=uuid.uuid4(), event_type="message.sent", occurred_at=when,
                    payload={"message_id": message_id, "case_ref": CASE, "message_type": "referral",
                             "sender": "01", "recipient": "12"})


def _heads(*chains: list[TimelineEntry]) -> dict[Chain, Head]:
    return {c[-1].chain: Head(c[-1].version, c[-1].hash, checkpoint(KEY, CASE, c[-1].version, c[-1].hash, c[-1].chain))
            for c in chains if c}


def test_the_stream_version_is_the_aggregate_version_after_each_event() -> None:
    j = reach(CaseStatus.CLOSED)
    entries = append_all([], j.history)
    for n, entry in enumerate(entries, start=1):
        assert entry.version == replay(j.history[:n]).version == n
    assert replay_timeline(entries).version == entries[-1].version == j.case.version


def test_appending_at_a_version_other_than_head_plus_one_is_a_stream_conflict() -> None:
    j = reach(CaseStatus.ON_BOOK)
    first, second = j.history[0], j.history[1]
    stream = [append([], first, version=1)]
    # Another writer read the case at version 1 too and appended first: our decision is stale.
    theirs = append(stream, second, version=2)
    with pytest.raises(StreamConflict, match=r"cannot append version 2.*at version 2 \(expected 3\)") as caught:
        append([*stream, theirs], second.model_copy(update={"event_id": uuid.uuid4()}), version=2)
    assert (caught.value.case_ref, caught.value.version, caught.value.head_version) == (CASE, 2, 2)
    with pytest.raises(StreamConflict):
        append(stream, second, version=5)  # a gap is refused too
    assert append(stream, second, version=2) == theirs


def test_bus_events_go_to_the_annotations_never_into_the_stream_and_never_move_its_version() -> None:
    j = reach(CaseStatus.REFERRED)
    stream = append_all([], j.history)
    with pytest.raises(ValueError, match="annotations"):
        new_entry(stream, case_ref=CASE, event_id=uuid.uuid4(), event_type="message.sent",
                  occurred_at=datetime(2026, 3, 7, tzinfo=UTC), payload={})
    notes = [_sent([], datetime(2026, 3, 7, tzinfo=UTC))]
    notes.append(_sent(notes, datetime(2026, 3, 8, tzinfo=UTC), "msg-2"))
    assert [n.version for n in notes] == [1, 2] and all(n.chain is Chain.ANNOTATIONS for n in notes)
    assert notes[0].prev_hash == GENESIS_HASH  # a chain of its own
    merged = merge(stream, notes)
    assert replay_timeline(merged) == j.case and replay_timeline(merged).version == stream[-1].version
    assert [e.occurred_at for e in merged] == sorted(e.occurred_at for e in merged)
    assert verify(stream).ok and verify(notes).ok
    odd = new_entry(notes, case_ref=CASE, event_id=uuid.uuid4(), event_type="case.mystery",
                    occurred_at=datetime(2026, 3, 9, tzinfo=UTC), payload={}, chain=Chain.ANNOTATIONS)
    bad = dataclasses.replace(odd, chain=Chain.EVENTS, version=stream[-1].version + 1)
    with pytest.raises(KeyError, match=r"case\.mystery"):
        events_from_timeline([*stream, bad])


def test_an_annotation_moved_into_the_stream_breaks_its_hash() -> None:
    """The chain's name is hashed: an entry cannot change chains and keep its hash."""
    note = _sent([], datetime(2026, 3, 7, tzinfo=UTC))
    moved = dataclasses.replace(note, chain=Chain.EVENTS, event_type="case.closed")
    assert verify([moved]).reason in {BreakReason.HASH_MISMATCH, BreakReason.NOT_A_CASE_EVENT}
    assert verify([dataclasses.replace(note, chain=Chain.EVENTS)]).reason is BreakReason.NOT_A_CASE_EVENT


def test_verify_case_checks_each_chain_against_its_own_head_and_names_the_broken_one() -> None:
    j = reach(CaseStatus.REFERRED)
    stream = append_all([], j.history)
    notes = [_sent([], datetime(2026, 3, 7, tzinfo=UTC))]
    notes.append(_sent(notes, datetime(2026, 3, 8, tzinfo=UTC), "msg-2"))
    heads = _heads(stream, notes)
    assert verify_case(CASE, merge(stream, notes), heads, KEY).ok
    # A case nothing was said about on the bus: its annotations are an empty chain, and fine.
    assert verify_case(CASE, stream, _heads(stream), KEY).ok

    edited = [notes[0], dataclasses.replace(notes[1], payload={**notes[1].payload, "recipient": "13"})]
    result = verify_case(CASE, merge(stream, edited), heads, KEY)
    assert result.broken == [Chain.ANNOTATIONS]
    assert (result.results[Chain.ANNOTATIONS].first_broken_version,
            result.results[Chain.ANNOTATIONS].reason) == (2, BreakReason.HASH_MISMATCH)
    assert result.results[Chain.EVENTS].ok

    truncated = stream[:-1]
    result = verify_case(CASE, merge(truncated, notes), heads, KEY)
    assert result.broken == [Chain.EVENTS] and result.results[Chain.EVENTS].reason is BreakReason.HEAD_MISMATCH
    # A head rewritten to match a recomputed chain fails its keyed checkpoint, in that chain only.
    recomputed = [notes[0], _sent([notes[0]], datetime(2026, 3, 8, tzinfo=UTC), "msg-forged")]
    forged = {**heads, Chain.ANNOTATIONS: Head(2, recomputed[1].hash, heads[Chain.ANNOTATIONS].checkpoint)}
    result = verify_case(CASE, merge(stream, recomputed), forged, KEY)
    assert result.broken == [Chain.ANNOTATIONS]
    assert result.results[Chain.ANNOTATIONS].reason is BreakReason.CHECKPOINT_MISMATCH
    # A checkpoint is made for its chain: the same head in the other chain does not match it.
    last = stream[-1]
    assert checkpoint(KEY, CASE, last.version, last.hash, Chain.EVENTS) != checkpoint(
        KEY, CASE, last.version, last.hash, Chain.ANNOTATIONS)


def test_an_empty_timeline_verifies_and_has_no_case() -> None:
    assert verify([]).ok
    with pytest.raises(ValueError):
        replay_timeline([])
