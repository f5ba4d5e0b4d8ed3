"""Who may say what on a case: each party only what is theirs to say.

The providing region answers for its offer and reports the care; the home region speaks for its
patient and pays (and may withdraw); the sweeper (`scheduler`) expires holds and raises warnings;
the coordination function (`operator`) may cancel or close, as may the home region.
"""

from __future__ import annotations

from marketplace.lifecycle.case import CaseState

SCHEDULER = "scheduler"
OPERATOR = "operator"

PROVIDER_COMMANDS = frozenset({"accept_match", "decline_match", "acknowledge_referral", "schedule",
                               "record_performed", "record_follow_up", "invoice"})
HOME_COMMANDS = frozenset({"offer_to_patient", "record_patient_answer", "withdraw", "record_payment"})
SCHEDULER_COMMANDS = frozenset({"expire_hold", "expire_case", "escalate_referral", "warn_guarantee"})
OPERATOR_COMMANDS = frozenset({"cancel", "close"})


def parties_to(state: CaseState) -> set[str]:
    """Everyone who may speak about the case at all (anyone else must not learn that it exists)."""
    parties = {state.home_region, SCHEDULER, OPERATOR}
    if state.match is not None:
        parties.add(state.match.providing_region)
    return parties


def who_may(command: str, state: CaseState) -> set[str]:
    """The parties that may issue `command` on the case now."""
    if command in SCHEDULER_COMMANDS:
        return {SCHEDULER}
    if command in OPERATOR_COMMANDS:
        return {OPERATOR, state.home_region}
    if command in HOME_COMMANDS:
        return {state.home_region}
    if command in PROVIDER_COMMANDS and state.match is not None:
        return {state.match.providing_region}
    return set()
