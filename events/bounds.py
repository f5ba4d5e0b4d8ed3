"""The bounds of the bus contract: what the store and the arithmetic can hold, with room to spare.

- Money: `price_sek` and amounts at most 10 million SEK, finite. A clearing round sums capacity x
  price per offer (10 000 x 10 000 000 = 1e11) and costs over a book: exact in a float's 53 bits,
  in `Decimal`, and in a NUMERIC(18, 2) or BIGINT öre column.
- Counts: capacity 1 to 10 000 per offer, 1 to 500 patients per request: both far below int32.
- Dates: every date lies within `DATE_PAST_YEARS` before and `DATE_FUTURE_YEARS` after today, so
  date arithmetic (a window plus 90 days, a guarantee date, a hold's deadline) never reaches the
  edge of the calendar (year 1 or 9999), and nothing from a mistyped century reaches the book.
  `waiting_since` may not lie in the future.
- Envelopes: at most `MAX_BODY_BYTES` of JSON nested at most `MAX_JSON_DEPTH` deep (see
  `events.envelope.decode_body`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Final

from pydantic_core import PydanticCustomError

MAX_CAPACITY: Final = 10_000
MAX_PATIENTS: Final = 500
MAX_PRICE_SEK: Final = 10_000_000.0
MAX_TRAVEL_KM: Final = 3_000.0
MAX_ARGS: Final = 12
DATE_PAST_YEARS: Final = 10
DATE_FUTURE_YEARS: Final = 5
MAX_BODY_BYTES: Final = 1_000_000
"""A region's envelope (an offer, a request of 500 patients, a command) is a few kB to ~60 kB.
Sealed secure messages may be larger; they are bounded by their own field (`SealedBase64`)."""
MAX_SEALED_BODY_BYTES: Final = 41_000_000
MAX_JSON_DEPTH: Final = 16


def today() -> date:
    return datetime.now(UTC).date()


def date_window(on: date | None = None) -> tuple[date, date]:
    """The first and last date the bus accepts today."""
    day = on or today()
    return day - timedelta(days=365 * DATE_PAST_YEARS + 3), day + timedelta(days=365 * DATE_FUTURE_YEARS + 2)


def check_bus_date(value: date) -> date:
    first, last = date_window()
    if not first <= value <= last:
        raise PydanticCustomError(
            "date_window", "a date lies between {first} and {last} ({past} years back, {future} ahead)",
            {"first": first.isoformat(), "last": last.isoformat(), "past": DATE_PAST_YEARS,
             "future": DATE_FUTURE_YEARS})
    return value


def check_waiting_since(value: date) -> date:
    check_bus_date(value)
    if value > today() + timedelta(days=1):
        raise PydanticCustomError("not_in_future", "waiting_since may not lie in the future")
    return value
