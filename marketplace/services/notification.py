"""The notifier role's wiring: which streams it follows and the handler of each.

The work itself is in `messaging` (notices, routing), `receipts` and `delivery` (the message
outbox, retries, escalation); keys and addresses in `directory`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from events import Streams
from marketplace.services.context import ServiceContext
from marketplace.services.delivery import DEFAULT_RETRY_POLICY, Courier, OutboxDelivery, PumpResult
from marketplace.services.directory import Federation, key_directory
from marketplace.services.messaging import Notifier
from marketplace.services.receipts import Receipts
from matchers.reference import regions
from notifiers.delivery import RetryPolicy

Handler = Callable[[AsyncSession, Sequence[Any], ServiceContext], Awaitable[Any]]


def notifier(state_dir: Path, policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> Notifier:
    """A notifier whose keys and address book live in `<state_dir>/keys` (made on first use)."""
    federation = Federation(key_directory(state_dir))
    return Notifier(federation, Courier(lambda session, ctx: OutboxDelivery(session, ctx, federation.book,
                                                                    refresh=federation.fresh_book), policy))


def receipts(n: Notifier) -> Receipts:
    """The receipts handler beside notifier `n` (the same keys, address book and courier)."""
    return Receipts(n.federation, n.courier)


def handlers(streams: Streams, state_dir: Path,
             policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> list[tuple[str, Handler]]:
    """(stream, handler) of the notifier role (consumer group `notifier`)."""
    n = notifier(state_dir, policy)
    r = receipts(n)
    codes = list(regions())
    # One submission and one receipt stream per region: the stream says which region handed it in.
    return [
        (streams.cases, n.on_cases),
        *((streams.secure_submissions(code), n.on_submissions) for code in codes),
        *((streams.secure_receipts(code), r.on_receipts) for code in codes),
    ]


async def pump(session: AsyncSession, ctx: ServiceContext, state_dir: Path,
               policy: RetryPolicy = DEFAULT_RETRY_POLICY) -> PumpResult:
    """Retry and escalate what is due, in the caller's transaction: the sweeper's periodic job. The
    notifier's batch handlers make each message's first hand-over attempt themselves and leave what
    is due later to this one scan, instead of scanning the whole message table once per batch."""
    return await notifier(state_dir, policy).courier.pump(session, ctx)
