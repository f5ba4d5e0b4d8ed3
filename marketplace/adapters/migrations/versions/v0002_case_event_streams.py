"""A case's own event stream apart from what the bus said about it.

The `timeline` table held a case's lifecycle events and the bus's entries about it (a message
sent, a receipt) in one chain, so a case's stream version was not the case's version. Now:

- `case_events`: the lifecycle events only, versioned 1..n, which is the case's version;
- `case_annotations`: the bus's entries, in a chain of their own per case (`position` 1..m), the
  bus event's id unique;
- `chain_heads`: each chain's head and keyed checkpoint, replacing `timeline_heads`.

The old rows are split into the two chains, renumbered and re-hashed. Re-hashing must not launder
a tampered timeline, so every old chain is first checked against its head (and the head's keyed
checkpoint when the key is at hand): a broken one stops the upgrade, naming the cases. The heads'
new checkpoints need the marketplace's key (`nvf db upgrade` and the workers pass the one in their
state directory); without it they are left empty, and `nvf timeline --verify` says so.

The hashing is written out here, frozen as it was at this revision (the application's may move on).
Downgrading merges the two chains back into one timeline by time, re-hashed the old way.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 23:10:00
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
# The lifecycle's event types at this revision: everything else on the old timeline came from the bus.
LIFECYCLE_TYPES = frozenset({
    "case.need_identified", "case.placed_on_book", "case.match_held", "case.provider_accepted_match",
    "case.provider_declined_match", "case.offered_to_patient", "case.patient_accepted_offer",
    "case.patient_declined_offer", "case.hold_expired", "case.hold_released", "case.referral_sent",
    "case.referral_escalated", "case.referral_acknowledged", "case.care_scheduled", "case.care_performed",
    "case.follow_up_recorded", "case.invoiced", "case.payment_recorded", "case.settled", "case.closed",
    "case.withdrawn", "case.cancelled", "case.expired", "case.guarantee_warning_raised",
})
_ENTRY = ("case_ref", "event_id", "event_type", "occurred_at", "payload", "prev_hash", "hash")


def _key() -> bytes | None:
    key: bytes | None = context.config.attributes.get("checkpoint_key")
    return key


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; every one written was UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _hash(prev_hash: str, row: Mapping[str, Any], version: int, chain: str | None) -> str:
    """An entry's hash: the old timeline's (`chain` None) or a chain's at this revision."""
    content: dict[str, Any] = {
        "case_ref": row["case_ref"], "version": version, "event_id": str(row["event_id"]),
        "event_type": row["event_type"], "occurred_at": _utc(row["occurred_at"]).isoformat(),
        "payload": row["payload"], "prev_hash": prev_hash,
    }
    if chain is not None:
        content["chain"] = chain
    return hashlib.sha256(_canonical(content).encode("utf-8")).hexdigest()


def _checkpoint(key: bytes | None, case_ref: str, version: int, head_hash: str, chain: str | None) -> str | None:
    if key is None:
        return None
    content: dict[str, Any] = {"case_ref": case_ref, "version": version, "hash": head_hash}
    if chain is not None:
        content["chain"] = chain
    return hmac.new(key, _canonical(content).encode("utf-8"), hashlib.sha256).hexdigest()


def _intact(rows: Sequence[Mapping[str, Any]], head: Mapping[str, Any] | None, key: bytes | None,
            chain: str | None, place: str) -> bool:
    """One chain (in stored order) checked link by link and against its head and checkpoint."""
    prev = GENESIS
    for n, row in enumerate(rows, start=1):
        if row[place] != n or row["prev_hash"] != prev or _hash(prev, row, n, chain) != row["hash"]:
            return False
        prev = row["hash"]
    if head is None:
        return not rows
    if (head["version"], head["hash"]) != (len(rows), prev):
        return False
    if key is not None and head["checkpoint"] is not None:
        expected = _checkpoint(key, head["case_ref"], head["version"], head["hash"], chain)
        return hmac.compare_digest(expected or "", head["checkpoint"])
    return True


def _chained(rows: Iterable[Mapping[str, Any]], chain: str | None, place: str) -> list[dict[str, Any]]:
    """`rows` of one case renumbered 1..n under `place` and hashed anew as `chain`."""
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for n, row in enumerate(rows, start=1):
        new = {k: row[k] for k in _ENTRY}
        new.update({place: n, "occurred_at": _utc(row["occurred_at"]), "prev_hash": prev})
        new["hash"] = prev = _hash(prev, new, n, chain)
        out.append(new)
    return out


def _heads(chains: Mapping[str, Sequence[Mapping[str, Any]]], key: bytes | None, chain: str | None,
           place: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    heads = []
    for ref, rows in chains.items():
        if rows:
            last = rows[-1]
            head = {"case_ref": ref, "version": last[place], "hash": last["hash"], "updated_at": now,
                    "checkpoint": _checkpoint(key, ref, last[place], last["hash"], chain)}
            if chain is not None:
                head["chain"] = chain
            heads.append(head)
    return heads


def _entry_columns(place: str) -> list[Any]:
    return [
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('case_ref', sa.String(length=128), nullable=False),
        sa.Column(place, sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('prev_hash', sa.String(length=64), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    ]


def _by_case(rows: Iterable[Any]) -> dict[str, list[Mapping[str, Any]]]:
    found: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        found[row["case_ref"]].append(row)
    return found


def _insert(table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if rows:
        op.get_bind().execute(table.insert(), rows)


def upgrade() -> None:
    case_events = op.create_table('case_events', *_entry_columns('version'),
        sa.UniqueConstraint('case_ref', 'event_id', name='uq_case_events_case_event'),
        sa.UniqueConstraint('case_ref', 'version', name='uq_case_events_case_version'),
    )
    op.create_index(op.f('ix_case_events_case_ref'), 'case_events', ['case_ref'], unique=False)
    case_annotations = op.create_table('case_annotations', *_entry_columns('position'),
        sa.UniqueConstraint('case_ref', 'position', name='uq_case_annotations_case_position'),
        sa.UniqueConstraint('event_id', name='uq_case_annotations_event'),
    )
    op.create_index(op.f('ix_case_annotations_case_ref'), 'case_annotations', ['case_ref'], unique=False)
    chain_heads = op.create_table('chain_heads',
        sa.Column('case_ref', sa.String(length=128), nullable=False),
        sa.Column('chain', sa.String(length=16), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('checkpoint', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('case_ref', 'chain'),
    )

    conn = op.get_bind()
    key = _key()
    old = sa.Table('timeline', sa.MetaData(), autoload_with=conn)
    old_heads = sa.Table('timeline_heads', sa.MetaData(), autoload_with=conn)
    timelines = _by_case(conn.execute(sa.select(old).order_by(old.c.case_ref, old.c.version)).mappings())
    heads = {h["case_ref"]: dict(h) for h in conn.execute(sa.select(old_heads)).mappings()}
    broken = sorted(ref for ref, rows in timelines.items() if not _intact(rows, heads.get(ref), key, None, "version"))
    if broken:
        raise RuntimeError(
            f"{len(broken)} case timeline(s) do not verify ({', '.join(broken[:5])}"
            f"{', ...' if len(broken) > 5 else ''}); splitting them would re-hash the tampering away. "
            "See `nvf timeline CASE --verify` with the previous version, restore them, then upgrade.")

    events = {ref: _chained((r for r in rows if r["event_type"] in LIFECYCLE_TYPES), "events", "version")
              for ref, rows in timelines.items()}
    annotations = {ref: _chained((r for r in rows if r["event_type"] not in LIFECYCLE_TYPES), "annotations",
                                 "position")
                   for ref, rows in timelines.items()}
    _insert(case_events, [row for rows in events.values() for row in rows])
    _insert(case_annotations, [row for rows in annotations.values() for row in rows])
    _insert(chain_heads, _heads(events, key, "events", "version") + _heads(annotations, key, "annotations", "position"))

    op.drop_index(op.f('ix_timeline_case_ref'), table_name='timeline')
    op.drop_table('timeline')
    op.drop_table('timeline_heads')


def downgrade() -> None:
    timeline = op.create_table('timeline', *_entry_columns('version'),
        sa.UniqueConstraint('case_ref', 'event_id', name='uq_timeline_case_event'),
        sa.UniqueConstraint('case_ref', 'version', name='uq_timeline_case_version'),
    )
    op.create_index(op.f('ix_timeline_case_ref'), 'timeline', ['case_ref'], unique=False)
    timeline_heads = op.create_table('timeline_heads',
        sa.Column('case_ref', sa.String(length=128), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('checkpoint', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('case_ref'),
    )

    conn = op.get_bind()
    key = _key()
    meta = sa.MetaData()
    case_events = sa.Table('case_events', meta, autoload_with=conn)
    case_annotations = sa.Table('case_annotations', meta, autoload_with=conn)
    merged: dict[str, list[tuple[datetime, int, int, Any]]] = defaultdict(list)
    for order, table, place in ((0, case_events, "version"), (1, case_annotations, "position")):
        for row in conn.execute(sa.select(table)).mappings():
            merged[row["case_ref"]].append((_utc(row["occurred_at"]), order, row[place], row))
    chains = {ref: _chained((r for *_, r in sorted(rows, key=lambda t: t[:3])), None, "version")
              for ref, rows in merged.items()}
    _insert(timeline, [row for rows in chains.values() for row in rows])
    _insert(timeline_heads, _heads(chains, key, None, "version"))

    op.drop_table('chain_heads')
    op.drop_index(op.f('ix_case_annotations_case_ref'), table_name='case_annotations')
    op.drop_table('case_annotations')
    op.drop_index(op.f('ix_case_events_case_ref'), table_name='case_events')
    op.drop_table('case_events')
