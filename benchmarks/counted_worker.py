"""`nvf run` with every row it writes counted, for the pipeline benchmark's calibration:
`python -m benchmarks.counted_worker COUNTS.json run --role intake`.

A listener on every SQLAlchemy engine (`after_cursor_execute`) tallies, per table, the rows each
INSERT, UPDATE and DELETE touched and the statements that did it; a daemon thread rewrites
COUNTS.json a few times a second (the process may leave through `os._exit`, so there is no last
write at exit to rely on). Nothing of the marketplace is changed: this only wraps its CLI.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# The table a write statement names, with or without a schema or quotes.
_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:"?\w+"?\.)?"?(\w+)"?', re.IGNORECASE)

_VALUES = re.compile(r"\sVALUES\s", re.IGNORECASE)
_counts: dict[str, int] = {}
_lock = threading.Lock()


def _after_cursor_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                          executemany: bool) -> None:
    match = _WRITE.match(statement)
    if match is None:
        return
    verb = match.group(1).split()[0].lower()
    table = match.group(2)
    if executemany and parameters and not isinstance(parameters[0], tuple | list | dict):
        # Rows inserted with their keys returned go as statements of many VALUES groups
        # ("insertmanyvalues"), each with one flat parameter list: a row per group.
        rows = _VALUES.split(statement, maxsplit=1)[-1].count("), (") + 1
    elif executemany:
        rows = len(parameters)  # asyncpg reports no count for executemany; one row per parameter set
    else:
        rowcount = getattr(cursor, "rowcount", -1)
        rows = rowcount if isinstance(rowcount, int) and rowcount >= 0 else 1
    with _lock:
        _counts[f"{verb}:{table}"] = _counts.get(f"{verb}:{table}", 0) + rows
        _counts[f"statements:{table}"] = _counts.get(f"statements:{table}", 0) + 1


def _dump_forever(path: Path) -> None:
    last = ""
    while True:
        with _lock:
            text = json.dumps(_counts, sort_keys=True)
        if text != last:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            last = text
        time.sleep(0.1)


def main() -> None:
    path = Path(sys.argv[1])
    event.listen(Engine, "after_cursor_execute", _after_cursor_execute)
    threading.Thread(target=_dump_forever, args=(path,), name="bench-counts", daemon=True).start()
    from marketplace.entrypoints.cli import main as nvf

    sys.argv = ["nvf", *sys.argv[2:]]
    nvf()


if __name__ == "__main__":
    main()
