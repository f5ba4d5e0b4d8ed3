"""Turning an SQLite file to write-ahead logging, safely when several connections open it at once.

The switch needs the file's exclusive lock, and SQLite does not wait for it with the busy
timeout when two connections that both read the header ask at the same moment (waiting could
deadlock, so one of them gets "database is locked" at once). That happens on a fresh file when
processes, or the eight upgrades of the migration test, start together. The mode is kept in the
file, so a connection that finds it already set does nothing; one that loses the race tries
again a little later, for as long as the busy timeout would have waited.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

# How long a connection waits for SQLite's write lock (the busy timeout), and for a switch to WAL.
BUSY_TIMEOUT_S = 30.0


def _locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def use_wal(dbapi_conn: Any) -> None:
    """Put the file in WAL mode (once; later connections find it so), waiting out a concurrent switch."""
    retrying = Retrying(retry=retry_if_exception(_locked), stop=stop_after_delay(BUSY_TIMEOUT_S),
                        wait=wait_random_exponential(multiplier=0.01, max=0.5), reraise=True)
    for attempt in retrying:
        with attempt:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("PRAGMA journal_mode")
                if str(cur.fetchone()[0]).lower() != "wal":
                    cur.execute("PRAGMA journal_mode=WAL")
            finally:
                cur.close()
