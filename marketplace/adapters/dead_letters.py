"""The dead-letter stream: entries whose handler kept failing, parked with the reason.

A dead letter keeps the original body unchanged (`__data__`) beside where it came from (stream,
group, entry id), how often it was delivered and why the last attempt failed. Moving an entry
here and acknowledging it in its stream happen in one MULTI, so it is never both or neither.
Replaying puts the body back on its stream as a new entry; the consumers' inbox keys on the
event id inside, so a replay that meets an already processed event has no second effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DATA_FIELD = "__data__"
REASON_LIMIT = 2000


@dataclass(frozen=True)
class DeadLetter:
    id: str
    stream: str
    group: str
    entry_id: str
    reason: str
    deliveries: int
    consumer: str
    failed_at: str
    body: bytes


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def dead_letter(redis: Any, dead_letter_stream: str, *, stream: str, group: str, entry_id: str,
                      body: bytes | str, reason: str, deliveries: int, consumer: str) -> None:
    """Park one entry in the dead-letter stream and acknowledge it in its own, atomically."""
    fields = {
        DATA_FIELD: body, "stream": stream, "group": group, "entry_id": entry_id,
        "reason": reason[:REASON_LIMIT], "deliveries": str(deliveries), "consumer": consumer,
        "failed_at": datetime.now(UTC).isoformat(),
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(dead_letter_stream, fields)
        pipe.xack(stream, group, entry_id)
        await pipe.execute()


def _parse(entry_id: Any, fields: dict[Any, Any]) -> DeadLetter:
    get = {_text(k): v for k, v in fields.items()}
    body = get.get(DATA_FIELD, b"")
    return DeadLetter(
        id=_text(entry_id), stream=_text(get.get("stream", b"")), group=_text(get.get("group", b"")),
        entry_id=_text(get.get("entry_id", b"")), reason=_text(get.get("reason", b"")),
        deliveries=int(_text(get.get("deliveries", b"0")) or 0), consumer=_text(get.get("consumer", b"")),
        failed_at=_text(get.get("failed_at", b"")), body=body if isinstance(body, bytes) else str(body).encode(),
    )


async def list_dead_letters(redis: Any, dead_letter_stream: str, *, count: int | None = None) -> list[DeadLetter]:
    entries = await redis.xrange(dead_letter_stream, count=count)
    return [_parse(entry_id, fields) for entry_id, fields in entries]


async def replay(redis: Any, dead_letter_stream: str, ids: list[str] | None = None) -> list[DeadLetter]:
    """Put dead letters back on their streams (all of them when `ids` is None); returns those replayed.

    A letter leaves the dead-letter stream only after its XADD succeeded: Redis does not roll back
    a MULTI whose XADD failed, so the two are sent one after the other. A crash between them leaves
    the letter in both places, which is safe: every consumer skips an event id it has processed.
    A failed resend raises `ResendFailed` naming the letter; the ones before it were resent."""
    letters = await list_dead_letters(redis, dead_letter_stream)
    wanted = letters if ids is None else [d for d in letters if d.id in set(ids)]
    for done, letter in enumerate(wanted):
        try:
            await redis.xadd(letter.stream, {DATA_FIELD: letter.body})
        except Exception as exc:
            raise ResendFailed(letter, wanted[:done], exc) from exc
        await redis.xdel(dead_letter_stream, letter.id)
    return wanted


class ResendFailed(Exception):
    """A dead letter could not be put back on its stream; it stays a dead letter."""

    def __init__(self, letter: DeadLetter, resent: list[DeadLetter], cause: Exception) -> None:
        super().__init__(f"dead letter {letter.id} could not be resent to {letter.stream}: {cause}")
        self.letter, self.resent = letter, resent
