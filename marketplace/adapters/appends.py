"""Append-only rows (timeline entries, outbox events, inbox ids, matches) inserted in bulk.

A batch of a few hundred events appends thousands of such rows. Building an ORM object for each
and flushing it through the unit of work costs more than the rest of the batch together, and on
SQLite every statement is a hop to the driver's thread. So these rows are collected on the
session as plain values and inserted with one executemany per table:

- when the transaction commits (a `before_commit` hook, so no caller can forget them);
- before any ORM statement runs while autoflush is on (so a query sees them, as it would see
  pending ORM objects); a caller that reads first and writes last runs under `no_autoflush`;
- never after a rollback: the collected rows are dropped with the transaction.

Insertion order is kept per table, which keeps the outbox's ids in the order events were staged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

_KEY = "nvf.appends"
# Tables whose inserted rows' keys someone needs (the outbox publishes its rows by them after
# the commit): the columns returned, and who is told (session, rows, the returned rows in any
# order: asking for the rows' order would make some drivers insert one row a statement).
_RETURNING: dict[Table, tuple[tuple[Any, ...], Callable[[Session, list[dict[str, Any]], list[Any]], None]]] = {}


# Rows of a table: values, or a function called when they are written (for rows that may still
# change until then, such as the snapshot of a case created in this transaction).
Rows = list[dict[str, Any] | Callable[[], list[dict[str, Any]]]]


def append(session: AsyncSession | Session, table: Table, row: dict[str, Any]) -> None:
    """Collect one row for `table`, written in this session's transaction."""
    pending: dict[Table, Rows] = session.info.setdefault(_KEY, {})
    pending.setdefault(table, []).append(row)


def append_when_written(session: AsyncSession | Session, table: Table,
                        rows: Callable[[], list[dict[str, Any]]]) -> None:
    """Collect `rows()` for `table`: called once, when the collected rows are written."""
    pending: dict[Table, Rows] = session.info.setdefault(_KEY, {})
    pending.setdefault(table, []).append(rows)


def on_inserted(table: Table, columns: tuple[Any, ...],
                callback: Callable[[Session, list[dict[str, Any]], list[Any]], None]) -> None:
    """Have `callback` told the `columns` of `table`'s rows as they are inserted."""
    _RETURNING[table] = (columns, callback)


async def write_appends(session: AsyncSession) -> None:
    """Write what has been collected now (the commit would do it anyway)."""
    if session.info.get(_KEY):
        await session.run_sync(_write)


def write_collected(session: Session) -> None:
    """Write what has been collected now, from synchronous code (a session event hook)."""
    _write(session)


def _write(session: Session) -> None:
    pending: dict[Table, Rows] | None = session.info.pop(_KEY, None)
    if not pending:
        return
    connection = session.connection()
    for table, collected in pending.items():
        rows: list[dict[str, Any]] = []
        for item in collected:
            if callable(item):
                rows += item()
            else:
                rows.append(item)
        if not rows:
            continue
        if table in _RETURNING:
            columns, told = _RETURNING[table]
            told(session, rows, list(connection.execute(table.insert().returning(*columns), rows)))
        else:
            connection.execute(table.insert(), rows)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write(session)


@event.listens_for(Session, "do_orm_execute")
def _before_statement(state: ORMExecuteState) -> None:
    session = state.session
    if session.autoflush and session.info.get(_KEY):
        _write(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction(session: Session, transaction: SessionTransaction) -> None:
    # Committed (already written) or rolled back or closed: nothing collected may outlive it.
    if transaction.parent is None:
        session.info.pop(_KEY, None)
