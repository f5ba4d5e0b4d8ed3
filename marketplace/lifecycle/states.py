"""The states of a case (vårdförmedlingsärende) and which command may move it from where.

The table here is the single source of truth for legality: `decide` refuses any command whose
name is not in `allowed_commands(status)`, and the refusal lists exactly that tuple.

Declines (by the provider or the patient) and hold expiries are *transitions*, not resting
states: they release the slot and put the case straight back on the book, so a case is never
parked in a "declined" state that someone must remember to move on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CaseStatus(StrEnum):
    NEED_IDENTIFIED = "need_identified"
    ON_BOOK = "on_book"
    MATCH_PROPOSED = "match_proposed"
    PROVIDER_ACCEPTED = "provider_accepted"
    OFFERED_TO_PATIENT = "offered_to_patient"
    PATIENT_ACCEPTED = "patient_accepted"
    REFERRED = "referred"
    REFERRAL_ACKNOWLEDGED = "referral_acknowledged"
    SCHEDULED = "scheduled"
    PERFORMED = "performed"
    FOLLOWED_UP = "followed_up"
    INVOICED = "invoiced"
    SETTLED = "settled"
    CLOSED = "closed"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


S = CaseStatus

TERMINAL: frozenset[CaseStatus] = frozenset({S.CLOSED, S.WITHDRAWN, S.EXPIRED, S.CANCELLED})

# A slot of an offer is reserved for the case from the proposal until care is performed (then it
# is consumed) or until the case leaves this set any other way (then it returns to the offer).
SLOT_RESERVED: frozenset[CaseStatus] = frozenset({
    S.MATCH_PROPOSED, S.PROVIDER_ACCEPTED, S.OFFERED_TO_PATIENT, S.PATIENT_ACCEPTED,
    S.REFERRED, S.REFERRAL_ACKNOWLEDGED, S.SCHEDULED,
})

# The reservation is a *hold* (it lapses) only while someone still has to answer: first the
# provider, then the patient. Once the patient accepts, the slot is booked and no longer expires.
HOLD_EXPIRES: frozenset[CaseStatus] = frozenset({
    S.MATCH_PROPOSED, S.PROVIDER_ACCEPTED, S.OFFERED_TO_PATIENT,
})

# The case has a match: reserved, or consumed by care performed (kept for the settlement).
HAS_MATCH: frozenset[CaseStatus] = frozenset({
    *SLOT_RESERVED, S.PERFORMED, S.FOLLOWED_UP, S.INVOICED, S.SETTLED, S.CLOSED,
})

# Care not yet performed and the case still open: the care-guarantee clock is running.
GUARANTEE_RUNNING: frozenset[CaseStatus] = frozenset({
    S.NEED_IDENTIFIED, S.ON_BOOK, *SLOT_RESERVED,
})

# The home region may withdraw, and the coordination function may cancel, any case whose care
# has not been performed yet. After that the case must run through invoicing to its end.
BEFORE_CARE: frozenset[CaseStatus] = GUARANTEE_RUNNING


@dataclass(frozen=True)
class Transition:
    """`command` is legal in any of `sources` and leads to one of `targets`."""

    command: str
    sources: frozenset[CaseStatus | None]
    targets: frozenset[CaseStatus]


def _t(command: str, sources: frozenset[CaseStatus | None] | set[CaseStatus | None],
       *targets: CaseStatus) -> Transition:
    return Transition(command, frozenset(sources), frozenset(targets))


# `None` is "no case yet": only identify_need can start one.
# Order matters only for messages: the forward path first, then the side exits.
TRANSITIONS: tuple[Transition, ...] = (
    _t("identify_need", {None}, S.NEED_IDENTIFIED),
    _t("place_on_book", {S.NEED_IDENTIFIED}, S.ON_BOOK),
    _t("propose_match", {S.ON_BOOK}, S.MATCH_PROPOSED),
    _t("accept_match", {S.MATCH_PROPOSED}, S.PROVIDER_ACCEPTED),
    _t("decline_match", {S.MATCH_PROPOSED}, S.ON_BOOK),
    _t("offer_to_patient", {S.PROVIDER_ACCEPTED}, S.OFFERED_TO_PATIENT),
    _t("record_patient_answer", {S.OFFERED_TO_PATIENT}, S.PATIENT_ACCEPTED, S.ON_BOOK),
    _t("send_referral", {S.PATIENT_ACCEPTED}, S.REFERRED),
    _t("acknowledge_referral", {S.REFERRED}, S.REFERRAL_ACKNOWLEDGED),
    _t("schedule", {S.REFERRAL_ACKNOWLEDGED, S.SCHEDULED}, S.SCHEDULED),
    _t("record_performed", {S.SCHEDULED}, S.PERFORMED),
    _t("record_follow_up", {S.PERFORMED}, S.FOLLOWED_UP),
    _t("invoice", {S.FOLLOWED_UP}, S.INVOICED, S.SETTLED),  # settled at once if nothing is owed
    _t("record_payment", {S.INVOICED}, S.INVOICED, S.SETTLED),
    _t("close", {S.SETTLED}, S.CLOSED),
    _t("withdraw", set(BEFORE_CARE), S.WITHDRAWN),
    _t("expire_hold", set(HOLD_EXPIRES), S.ON_BOOK),
    _t("escalate_referral", {S.REFERRED}, S.REFERRED),
    _t("expire_case", {S.NEED_IDENTIFIED, S.ON_BOOK}, S.EXPIRED),
    _t("cancel", set(BEFORE_CARE), S.CANCELLED),
    _t("warn_guarantee", set(GUARANTEE_RUNNING), *GUARANTEE_RUNNING),
)

_ALLOWED: dict[CaseStatus | None, tuple[str, ...]] = {
    status: tuple(t.command for t in TRANSITIONS if status in t.sources)
    for status in (None, *CaseStatus)
}


def allowed_commands(status: CaseStatus | None) -> tuple[str, ...]:
    """Names of the commands legal in `status` (None: no case yet), in a stable order."""
    return _ALLOWED[status]


def targets_of(command: str, status: CaseStatus | None) -> frozenset[CaseStatus]:
    """Where `command` may lead from `status`; empty if it is not legal there."""
    for t in TRANSITIONS:
        if t.command == command and status in t.sources:
            return t.targets
    return frozenset()
