"""The demo's patients: synthetic, made up from the case reference.

A Swedish-format personal identity number with a valid check digit and a name, derived from the
case reference, so a test can recompute them and look for them everywhere they must not be.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from notifiers.identifiers import luhn_valid

CLINICAL_SUMMARY = "Remiss för åtgärd enligt vårdgarantin. Anamnes och status bifogas (syntetiska uppgifter)."
_GIVEN = ("Alvina", "Edvira", "Majken", "Nilsine", "Ottilde", "Sunniva", "Gretel", "Ingvalda", "Arvedine", "Tyra")
_FAMILY_HEAD = ("Kvarn", "Ljung", "Sälg", "Rönn", "Tjärn", "Myr", "Hägg", "Lönn")
_FAMILY_TAIL = ("ekvist", "grenius", "hammarén", "dahlius", "strömer", "bladin", "markell", "byström")


@dataclass(frozen=True)
class SyntheticIdentity:
    personal_identity_number: str
    given_name: str
    family_name: str


def synthetic_identity(case_ref: str) -> SyntheticIdentity:
    """A made-up patient for `case_ref`: always the same, never a real person's number on purpose
    (a random birth date and serial with a computed check digit; the names are invented)."""
    digest = hashlib.sha256(f"nvf-demo-patient/{case_ref}".encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    birth = date(1931, 1, 1) + timedelta(days=n % (365 * 40))
    serial = f"{(n >> 20) % 1000:03d}"
    body = f"{birth:%y%m%d}{serial}"
    check = next(str(d) for d in range(10) if luhn_valid(body + str(d)))
    return SyntheticIdentity(
        personal_identity_number=f"{birth:%Y%m%d}-{serial}{check}",
        given_name=_GIVEN[(n >> 32) % len(_GIVEN)],
        family_name=_FAMILY_HEAD[(n >> 40) % len(_FAMILY_HEAD)] + _FAMILY_TAIL[(n >> 48) % len(_FAMILY_TAIL)],
    )
