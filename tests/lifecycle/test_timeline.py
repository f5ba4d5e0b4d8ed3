"""The hash-chained timeline: appended, verified, and tampering caught."""

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
    TimelineEntry,
    append,
    append_all,
    chain_hash,
    events_from_timeline,
    new_entry,
    replay,
    replay_timeline,
    verify,
)
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
    content = {"case_ref": e.case_ref, "version": 1, "event_id": str(e.event_id),
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


def test_bus_entries_share_the_timeline_and_are_skipped_by_replay_unknown_types_are_not() -> None:
    j = reach(CaseStatus.REFERRED)
    entries = append_all([], j.history)
    sent = new_entry(entries, case_ref=CASE, event_id=uuid.uuid4(), event_type="message.sent",
                     occurred_at=datetime(2026, 3, 7, tzinfo=UTC),
                     payload={"message_id": "msg-1", "case_ref": CASE, "message_type": "referral",
                              "sender": "01", "recipient": "12"})
    entries.append(sent)
    assert verify(entries).ok
    assert replay_timeline(entries) == j.case
    odd = new_entry(entries, case_ref=CASE, event_id=uuid.uuid4(), event_type="case.mystery",
                    occurred_at=datetime(2026, 3, 8, tzinfo=UTC), payload={})
    with pytest.raises(KeyError, match=r"case\.mystery"):
        events_from_timeline([*entries, odd])


def test_an_empty_timeline_verifies_and_has_no_case() -> None:
    assert verify([]).ok
    with pytest.raises(ValueError):
        replay_timeline([])
