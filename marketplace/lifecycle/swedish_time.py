"""Calendar days are Swedish days: the care guarantee counts them, and a deadline "on a date"
falls at the start of that date in Sweden, whatever zone a server runs in."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

SWEDISH_TIME = ZoneInfo("Europe/Stockholm")


def require_aware(moment: datetime, name: str = "now") -> datetime:
    # A naive datetime is ambiguous by hours; the domain never guesses a zone.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return moment


def swedish_date(moment: datetime) -> date:
    """The calendar date in Sweden at `moment`."""
    return require_aware(moment).astimezone(SWEDISH_TIME).date()


def start_of_swedish_day(day: date) -> datetime:
    """Midnight at the start of `day` in Sweden (an aware datetime)."""
    return datetime.combine(day, time(0), tzinfo=SWEDISH_TIME)
