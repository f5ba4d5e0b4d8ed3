"""The parties of a deployment: the 21 regions, the operator, and the service roles.

Each is one Redis user (marketplace/access.py) and, if it publishes, one ingress stream.
"""

from __future__ import annotations

from events.parties import COMMANDING_PARTIES, SERVICE_ROLES
from matchers.reference import regions


def region_codes() -> list[str]:
    return list(regions())


def ingress_parties() -> list[str]:
    """Every party with an ingress stream of its own: the regions, the operator, the scheduler."""
    return [*region_codes(), *COMMANDING_PARTIES]


def all_parties() -> list[str]:
    """Every party that gets a Redis user: the regions, the operator, the service roles."""
    return [*region_codes(), "operator", *SERVICE_ROLES]
