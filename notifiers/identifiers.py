"""Swedish identifiers the messages carry: organisation numbers, HSA-ids, key ids.

Also the detector for personal identity numbers (personnummer), which must never appear in the
readable part of a message.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

_ORG_NUMBER = re.compile(r"^\d{6}-\d{4}$")
# A personnummer or samordningsnummer, with or without century and separator. The month/day check
# and the Luhn digit are applied afterwards; the regex only finds candidates.
_PERSONAL_NUMBER = re.compile(r"(?<!\d)(?:\d{2})?(\d{2})(\d{2})(\d{2})[-+]?(\d{4})(?!\d)")


def luhn_valid(digits: str) -> bool:
    """The mod-10 check digit used by both organisation numbers and personal identity numbers."""
    total = 0
    for i, ch in enumerate(digits):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _check_org_number(value: str) -> str:
    if not _ORG_NUMBER.match(value):
        raise ValueError("an organisation number is written NNNNNN-NNNN")
    digits = value.replace("-", "")
    # Legal persons have 2 or more in the third digit; this is what tells them from personnummer,
    # so a person's number can never be accepted where an organisation is meant.
    if int(digits[2]) < 2:
        raise ValueError("the third digit of an organisation number is at least 2")
    if not luhn_valid(digits):
        raise ValueError("the check digit of the organisation number is wrong")
    return value


OrgNumber = Annotated[
    str,
    Field(pattern=r"^\d{6}-\d{4}$", description="Swedish organisation number, e.g. 232100-0016"),
    AfterValidator(_check_org_number),
]
HsaId = Annotated[
    str,
    Field(pattern=r"^SE\d{10}-[A-Za-z0-9]{1,31}$",
          description="functional address: an HSA-id such as SE2321000016-A1B2C"),
]
KeyId = Annotated[
    str,
    Field(pattern=r"^(sig|enc)-[0-9a-f]{20}$", description="fingerprint-derived id of a public key"),
]


def functional_address(org_number: str, unit: str = "NVF") -> str:
    """The HSA-id of a unit of an organisation: SE, the org number without dash, a unit suffix."""
    return f"SE{_check_org_number(org_number).replace('-', '')}-{unit}"


def contains_personal_identity_number(text: str) -> bool:
    """True if `text` holds something that is a valid personnummer or samordningsnummer."""
    for match in _PERSONAL_NUMBER.finditer(text):
        yy, mm, dd, tail = match.groups()
        month, day = int(mm), int(dd)
        # Samordningsnummer add 60 to the day.
        if not (1 <= month <= 12 and (1 <= day <= 31 or 61 <= day <= 91)):
            continue
        if luhn_valid(yy + mm + dd + tail):
            return True
    return False


def check_personal_identity_number(value: str) -> str:
    """Validate a personnummer written YYYYMMDD-NNNN (12 digits, the form used in referrals)."""
    if not re.fullmatch(r"\d{8}-\d{4}", value) or not contains_personal_identity_number(value):
        raise ValueError("a personal identity number is written YYYYMMDD-NNNN with a valid check digit")
    return value


PersonalIdentityNumber = Annotated[str, AfterValidator(check_personal_identity_number)]
