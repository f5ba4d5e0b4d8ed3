"""Connections opening a fresh SQLite file at the same moment all get it in WAL mode, none "database is locked"."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from marketplace.adapters.sqlite_wal import use_wal

CONNECTIONS = 8
ROUNDS = 40  # a bare `PRAGMA journal_mode=WAL` loses about one round in eight here


def _open_switch_and_write(path: Path, table: str, start: threading.Barrier, errors: list[BaseException]) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        start.wait()
        use_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (n INTEGER)")
        conn.executemany(f"INSERT INTO {table} VALUES (?)", [(n,) for n in range(50)])
        conn.execute("COMMIT")
    except BaseException as error:
        errors.append(error)
    finally:
        conn.close()


def test_connections_racing_on_a_fresh_file_all_switch_it_to_wal(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = tmp_path / f"race-{round_}.db"
        start = threading.Barrier(CONNECTIONS)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_open_switch_and_write, args=(path, f"t{i % 2}", start, errors))
                   for i in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"round {round_}: {errors}"
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            rows = sum(check.execute(f"SELECT count(*) FROM t{i}").fetchone()[0] for i in range(2))
        assert rows == CONNECTIONS * 50
