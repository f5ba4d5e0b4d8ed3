"""Which party may send which secure message to whom, in which state of the case: a pure rule.

"home" is the patient's home region, "provider" the providing region (its units' messages are
signed by the region). The marketplace's own notices are sent by nobody else. A referral goes to
the one unit that will treat the patient, and only once the provider and the patient have
accepted (staged release). What the address book says (is the unit listed, does the functional
address exist) is the notifier's to check after this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from marketplace.lifecycle.case import CaseState
from marketplace.lifecycle.states import CaseStatus
from notifiers.message_types import MatchNotice, MatchReleased
from notifiers.receipts import ReceiptDetail

PARTY_MESSAGES: dict[str, tuple[str, str]] = {
    "referral": ("home", "provider"),
    "referral.answer": ("provider", "home"),
    "care.performed": ("provider", "home"),
    "follow_up": ("provider", "home"),
    "invoice": ("provider", "home"),
}
MARKETPLACE_MESSAGES = frozenset({MatchNotice.TYPE, MatchReleased.TYPE})


@dataclass(frozen=True)
class RouteRefused:
    detail: ReceiptDetail
    reason: str


def route_refusal(kind: str, sender_org: str, recipient_org: str, recipient_address: str | None,
                  state: CaseState, org_of: Mapping[str, str]) -> RouteRefused | None:
    """Why a party's message of type `kind` may not go this way now, or None if it may.

    `org_of` maps the case's region codes to their organisation numbers."""
    if kind in MARKETPLACE_MESSAGES:
        return RouteRefused(ReceiptDetail.FORBIDDEN, f"only the marketplace sends {kind}")
    if kind not in PARTY_MESSAGES:
        return RouteRefused(ReceiptDetail.NOT_SUPPORTED, f"message type {kind!r}")
    match = state.match
    if match is None:
        return RouteRefused(ReceiptDetail.FORBIDDEN, f"case {state.case_ref} has no match ({state.status})")
    sender_role, recipient_role = PARTY_MESSAGES[kind]
    expected = {"home": org_of[state.home_region], "provider": org_of[match.providing_region]}
    if sender_org != expected[sender_role]:
        return RouteRefused(ReceiptDetail.FORBIDDEN, f"{kind} is sent by the {sender_role} region")
    if recipient_org != expected[recipient_role]:
        return RouteRefused(ReceiptDetail.FORBIDDEN, f"{kind} goes to the {recipient_role} region")
    if kind == "referral":
        if recipient_address != match.unit_hsa_id:
            return RouteRefused(ReceiptDetail.FORBIDDEN, f"a referral goes to the matched unit {match.unit_hsa_id}")
        if state.status is not CaseStatus.PATIENT_ACCEPTED:
            return RouteRefused(ReceiptDetail.FORBIDDEN, f"case {state.case_ref} is {state.status.value}: a referral "
                                                         f"is sent once the provider and the patient have accepted")
    return None
