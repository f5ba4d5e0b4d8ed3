"""HSA-ids of performing units: `SE`, the organisation number of the care giver, `-`, a local part.

No well-kept library checks HSA-ids themselves (python-stdnum has no HSA module), so the shape is
a documented pattern (country code SE, the care giver's 10-digit organisation number, a dash, the
unit's local part of letters and digits, as the marketplace's units are written everywhere else,
see `notifiers.identifiers.HsaId`), and the embedded organisation number is checked with
python-stdnum's `stdnum.se.orgnr` (its check digit).
"""

from __future__ import annotations

import re

from stdnum.exceptions import ValidationError
from stdnum.se import orgnr

_HSA_ID = re.compile(r"^SE(\d{10})-([A-Za-z0-9]{1,31})$")


def hsa_id_problem(value: str) -> str | None:
    """Why `value` is not a valid HSA-id, or None when it is."""
    match = _HSA_ID.match(value)
    if match is None:
        return (f"{value!r} is not an HSA-id: write SE, the 10-digit organisation number, a dash and the "
                "unit's letters and digits, e.g. SE2321000016-A1B2C")
    try:
        orgnr.validate(match.group(1))
    except ValidationError as exc:
        return f"the organisation number {match.group(1)} in {value!r} is not valid ({exc})"
    return None
