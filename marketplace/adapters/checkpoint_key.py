"""The marketplace's own key for timeline checkpoints, kept in the state directory.

Whoever can write the database can rewrite a hash chain and recompute every hash; they cannot
compute the keyed checkpoint of the new head without this key, which lives with the marketplace's
processes (the state directory), not in the database.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "timeline-checkpoint.key"
KEY_BYTES = 32


def key_path(state_dir: Path) -> Path:
    return state_dir / "keys" / KEY_FILE


def load_key(state_dir: Path) -> bytes | None:
    """The key, or None when this state directory has none (nothing was checkpointed with it)."""
    path = key_path(state_dir)
    if not path.exists():
        return None
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def load_or_create_key(state_dir: Path) -> bytes:
    """The key, created (readable by its owner only) on first use. Two processes starting at once
    both try to create it; `O_EXCL` lets one win and the other reads the winner's."""
    existing = load_key(state_dir)
    if existing is not None:
        return existing
    path = key_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        loaded = load_key(state_dir)
        assert loaded is not None
        return loaded
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex())
    return key
