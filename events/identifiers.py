"""Identifiers on the bus, shaped so that they cannot carry a patient's identity.

Every identifier a region chooses (offer and request ids, case refs, round ids, invoice and payment
references, correlation ids) travels in the clear: on streams, in logs, in rejections. So its shape
rules identity out rather than hoping nobody puts it there:

    <kind>-<body>        e.g.  off-3-0000   case-k7x2-19q   rnd-9fz4bq2m

- `kind` is one of a fixed list of lowercase prefixes (`KINDS`): no free word.
- `body` uses only digits and the consonants `bcdfghjklmnpqrstvwxz` (no vowels, not even `y`, and
  no letters outside ASCII), in groups joined by `-`: no name can be spelt in it.
- at most `MAX_DIGITS` digits in all (a personnummer has 10), no more than `MAX_DIGIT_RUN` of them
  in a row, and none of its digit windows a valid personnummer or samordningsnummer (checked with
  python-stdnum): no personal identity number can be written in it, with or without separators,
  letters or filler digits between its digits.
- at most `MAX_ID_LENGTH` characters.

Event ids are UUIDs (the producer's idempotency key); their digit runs, read across the dashes,
must not hold a personnummer either. `new_event_id` and `events.envelope.stable_event_id` only ever
produce ids that pass. A UUID has 122 free bits, and a producer bent on it could encode anything in
them (so could it in any id long enough to be unique): the rules stop a number or a name written
plainly, by mistake or by a careless integration, not a deliberate covert channel.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from typing import Final

from stdnum import luhn
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.se import personnummer

KINDS: Final = ("off", "req", "case", "rnd", "corr", "inv", "pay", "mtch", "msg", "ref", "unit")
CONSONANTS: Final = "bcdfghjklmnpqrstvwxz"
MAX_ID_LENGTH: Final = 64
MAX_DIGIT_RUN: Final = 6
MAX_DIGITS: Final = 9
ID_PATTERN: Final = (rf"^(?:{'|'.join(KINDS)})-[0-9{CONSONANTS}]+(?:-[0-9{CONSONANTS}]+)*$")
ID_DESCRIPTION: Final = (
    f"`<kind>-<body>`: kind one of {', '.join(KINDS)}; body of digits and the consonants "
    f"{CONSONANTS} in groups joined by '-' (no vowels, so no name fits); at most {MAX_DIGITS} digits, "
    f"{MAX_DIGIT_RUN} in a row, and no valid personnummer or samordningsnummer among its digits; "
    f"at most {MAX_ID_LENGTH} characters")

_ID = re.compile(ID_PATTERN)
_DIGIT_RUN = re.compile(rf"\d{{{MAX_DIGIT_RUN + 1},}}")


class IdentifierError(ValueError):
    """An identifier that breaks `rule` (a short machine word, safe to tell the sender)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def is_personal_number(number: str) -> bool:
    """Whether `number` (10 or 12 digits) is a valid personnummer or samordningsnummer.

    stdnum checks personnummer (birth date and Luhn digit); a samordningsnummer is one with 60
    added to the day, its Luhn digit over the digits as written.
    """
    day_at = 4 if len(number) == 10 else 6
    # Both need a month 01-12 and a day 01-31 (61-91 for a samordningsnummer) where stdnum reads
    # them: asked first, this turns most digit runs away without parsing a date (every event id's
    # runs are checked, five per secure message).
    if not ("01" <= number[day_at - 2:day_at] <= "12" and
            ("01" <= number[day_at:day_at + 2] <= "31" or "61" <= number[day_at:day_at + 2] <= "91")):
        return False
    if personnummer.is_valid(number):
        return True
    day = int(number[day_at:day_at + 2])
    if not 61 <= day <= 91:
        return False
    as_birth = f"{number[:day_at]}{day - 60:02d}{number[day_at + 2:]}"
    try:
        personnummer.get_birth_date(as_birth)
    except StdnumError:
        return False
    return luhn.is_valid(number[-10:])


def holds_personal_number(digits: str) -> bool:
    """Whether some 10 or 12 consecutive characters of `digits` (digits only) form a valid
    personnummer or samordningsnummer."""
    for width in (10, 12):
        for start in range(len(digits) - width + 1):
            if is_personal_number(digits[start:start + width]):
                return True
    return False


# The same ids are checked again at every hop (parse, payload, envelope, row): the checks are pure,
# so a bounded cache of the ids that passed keeps a batch from paying for each id many times.
@functools.lru_cache(maxsize=65536)
def check_identifier(value: str) -> str:
    """`value` if it is a safe bus identifier; raises IdentifierError naming the rule it breaks.
    The message never repeats the value."""
    if len(value) > MAX_ID_LENGTH:
        raise IdentifierError("id_length", f"an identifier has at most {MAX_ID_LENGTH} characters")
    if not _ID.match(value):
        raise IdentifierError("id_pattern", f"an identifier must be {ID_DESCRIPTION}")
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) > MAX_DIGITS or _DIGIT_RUN.search(value):
        raise IdentifierError("id_digits", f"an identifier has at most {MAX_DIGITS} digits, {MAX_DIGIT_RUN} in a row")
    if holds_personal_number(digits):
        raise IdentifierError("no_personal_number", "an identifier must not hold a personal identity number")
    return value


@functools.lru_cache(maxsize=65536)
def check_event_id(value: uuid.UUID) -> uuid.UUID:
    """A UUID whose digit runs (read across its dashes) hold no personnummer."""
    for run in re.findall(r"\d+", value.hex):
        if len(run) >= 10 and holds_personal_number(run):
            raise IdentifierError("no_personal_number", "an event id must not hold a personal identity number")
    return value


def is_safe_event_id(value: uuid.UUID) -> bool:
    try:
        check_event_id(value)
    except IdentifierError:
        return False
    return True


def new_event_id() -> uuid.UUID:
    """A random event id that passes `check_event_id` (about one in a thousand does not)."""
    while True:
        candidate = uuid.uuid4()
        if is_safe_event_id(candidate):
            return candidate


def is_identifier(value: str) -> bool:
    try:
        check_identifier(value)
    except IdentifierError:
        return False
    return True


def safe_token(seed: bytes, length: int = 12) -> str:
    """`length` consonants derived from `seed` (a digest; 20^12 is about 4e15): for ids made from
    other ids, e.g. a scenario file's, which may not fit the bus's rules themselves. No digits, so
    the token leaves an id's digit allowance to the rest of it."""
    digest = hashlib.sha256(seed).digest()
    return "".join(CONSONANTS[b % len(CONSONANTS)] for b in digest[:length])
