"""Units as the address book lists them: an HSA-id `SE<org number without dash>-<unit>` names its
organisation, and is listed as a functional address of it once something is routed to it."""

from __future__ import annotations

import re

from notifiers.address_book import AddressBook

_UNIT_HSA_ID = re.compile(r"^SE(\d{6})(\d{4})-[A-Za-z0-9]{1,31}$")


class UnknownUnit(LookupError):
    """An HSA-id that does not resolve to the organisation it is claimed for."""


def unit_org_number(hsa_id: str) -> str | None:
    """The organisation number embedded in a unit's HSA-id, written NNNNNN-NNNN."""
    m = _UNIT_HSA_ID.match(hsa_id)
    return f"{m.group(1)}-{m.group(2)}" if m else None


def with_unit(book: AddressBook, hsa_id: str, *, region_code: str | None = None) -> AddressBook:
    """`book` with `hsa_id` listed under its organisation; raises UnknownUnit if it cannot be."""
    owner = book.by_address(hsa_id)
    org = owner.org_number if owner is not None else unit_org_number(hsa_id)
    entry = book.get(org) if org else None
    if entry is None:
        raise UnknownUnit(f"{hsa_id} names no organisation of the federation")
    if region_code is not None and entry.code != region_code:
        raise UnknownUnit(f"{hsa_id} belongs to {entry.org_number}, not to region {region_code}")
    return book if owner is not None else book.with_address(entry.org_number, hsa_id)
