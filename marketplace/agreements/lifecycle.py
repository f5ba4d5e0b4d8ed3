"""An agreement's lifecycle: draft → registered → ended, and who may move it.

Each step is a pure function from the agreement as it stands (or None) to a `Change` (the
agreement as it becomes, and the event type its new version is recorded under), to None when the
step changes nothing (the same terms again: a repeated import), or to `AgreementRefused` naming
the field and the rule. `actor` is the region the step comes from, as the authenticated channel
says (the envelope's producer); only the purchasing region may create, register, revise or end
its agreements.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum

from events import AgreementTerms
from marketplace.agreements.rules import check_terms
from matchers.validation import Violation


class AgreementStatus(StrEnum):
    DRAFT = "draft"
    REGISTERED = "registered"
    ENDED = "ended"


class AgreementRefused(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message

    @classmethod
    def from_violation(cls, v: Violation) -> AgreementRefused:
        return cls(v.field, v.rule, v.message)


@dataclass(frozen=True, slots=True)
class Agreement:
    """An agreement as it stands. `terms` is None only for an agreement registered in the original
    triple form (purchaser, provider, care area), which names no unit and is open-ended."""

    agreement_id: str
    purchaser: str
    provider: str
    care_areas: tuple[str, ...]
    status: AgreementStatus
    version: int
    terms: AgreementTerms | None = None
    ended_on: date | None = None

    @property
    def valid_from(self) -> date | None:
        return self.terms.valid_from if self.terms else None

    @property
    def valid_to(self) -> date | None:
        return self.terms.valid_to if self.terms else None

    def in_force_on(self, day: date) -> bool:
        """Registered (or ended later than `day`) and inside its validity period on `day`: only
        then does it count for a request that requires an agreement."""
        if self.status is AgreementStatus.DRAFT:
            return False
        if self.ended_on is not None and day >= self.ended_on:
            return False
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_to is None or day <= self.valid_to


@dataclass(frozen=True, slots=True)
class Change:
    agreement: Agreement
    event_type: str  # what the new version is recorded as: agreement.drafted / registered / updated / ended


def legacy_agreement_id(purchaser: str, provider: str, care_area: str) -> str:
    return f"{purchaser}-{provider}-{care_area}"


def _owner_only(actor: str, purchaser: str) -> None:
    if actor != purchaser:
        raise AgreementRefused("producer", "producer_is_purchaser",
                               f"only the purchasing region {purchaser} may change its agreements, not {actor!r}")


def _same_owner(current: Agreement, purchaser: str) -> None:
    if current.purchaser != purchaser:
        raise AgreementRefused("purchaser", "owner",
                               f"agreement {current.agreement_id!r} belongs to region {current.purchaser}")


def _checked(purchaser: str, terms: AgreementTerms) -> AgreementTerms:
    found = check_terms(purchaser, terms)
    if found:
        raise AgreementRefused.from_violation(found[0])
    return terms


def _new(agreement_id: str, purchaser: str, terms: AgreementTerms, status: AgreementStatus) -> Agreement:
    return Agreement(agreement_id, purchaser, terms.provider, terms.care_areas, status, 1, terms)


def _revised(current: Agreement, terms: AgreementTerms, status: AgreementStatus) -> Agreement:
    return replace(current, provider=terms.provider, care_areas=terms.care_areas, terms=terms, status=status,
                   version=current.version + 1)


def _not_ended(current: Agreement) -> None:
    if current.status is AgreementStatus.ENDED:
        raise AgreementRefused("agreement_id", "not_ended",
                               f"agreement {current.agreement_id!r} ended on {current.ended_on}; draft a new one")


def draft(current: Agreement | None, agreement_id: str, purchaser: str, terms: AgreementTerms,
          actor: str) -> Change | None:
    """Create a draft, or revise a draft that is still one."""
    _owner_only(actor, purchaser)
    _checked(purchaser, terms)
    if current is None:
        return Change(_new(agreement_id, purchaser, terms, AgreementStatus.DRAFT), "agreement.drafted")
    _same_owner(current, purchaser)
    _not_ended(current)
    if current.status is not AgreementStatus.DRAFT:
        raise AgreementRefused("agreement_id", "still_draft",
                               f"agreement {agreement_id!r} is registered already: send agreement.updated")
    if current.terms == terms:
        return None
    return Change(_revised(current, terms, AgreementStatus.DRAFT), "agreement.drafted")


def register(current: Agreement | None, agreement_id: str, purchaser: str, terms: AgreementTerms | None,
             actor: str) -> Change | None:
    """Register a draft (as it stands, or with `terms`), or with `terms` create or revise a registered
    agreement: what a region's export says it has signed. The same terms again change nothing."""
    _owner_only(actor, purchaser)
    if terms is not None:
        _checked(purchaser, terms)
    if current is None:
        if terms is None:
            raise AgreementRefused("agreement_id", "known_agreement",
                                   f"no agreement {agreement_id!r}: draft it first or send its terms")
        return Change(_new(agreement_id, purchaser, terms, AgreementStatus.REGISTERED), "agreement.registered")
    _same_owner(current, purchaser)
    _not_ended(current)
    if current.status is AgreementStatus.DRAFT:
        return Change(_revised(current, terms or _terms_of(current), AgreementStatus.REGISTERED),
                      "agreement.registered")
    if terms is None or terms == current.terms:
        return None
    return Change(_revised(current, terms, AgreementStatus.REGISTERED), "agreement.updated")


def update(current: Agreement | None, agreement_id: str, purchaser: str, terms: AgreementTerms,
           actor: str) -> Change | None:
    """New terms for a draft or a registered agreement (its status stays)."""
    _owner_only(actor, purchaser)
    _checked(purchaser, terms)
    if current is None:
        raise AgreementRefused("agreement_id", "known_agreement", f"no agreement {agreement_id!r}")
    _same_owner(current, purchaser)
    _not_ended(current)
    if terms == current.terms:
        return None
    return Change(_revised(current, terms, current.status), "agreement.updated")


def end(current: Agreement | None, agreement_id: str, purchaser: str, ended_on: date, actor: str) -> Change | None:
    """End a registered agreement: it counts for matching before `ended_on` only. Ending it again on
    the same day changes nothing."""
    _owner_only(actor, purchaser)
    if current is None:
        raise AgreementRefused("agreement_id", "known_agreement", f"no agreement {agreement_id!r}")
    _same_owner(current, purchaser)
    if current.status is AgreementStatus.ENDED:
        if current.ended_on == ended_on:
            return None
        raise AgreementRefused("agreement_id", "not_ended",
                               f"agreement {agreement_id!r} already ended on {current.ended_on}")
    if current.status is AgreementStatus.DRAFT:
        raise AgreementRefused("agreement_id", "registered",
                               f"agreement {agreement_id!r} is a draft: only a registered agreement can end")
    if current.valid_from is not None and ended_on < current.valid_from:
        raise AgreementRefused("ended_on", "ended_in_validity",
                               f"ended_on {ended_on} is before the agreement's valid_from {current.valid_from}")
    ended = replace(current, status=AgreementStatus.ENDED, ended_on=ended_on, version=current.version + 1)
    return Change(ended, "agreement.ended")


def register_triple(current: Agreement | None, purchaser: str, provider: str, care_area: str,
                    actor: str) -> Change | None:
    """The original form: `purchaser` may buy `care_area` from `provider`, open-ended, no unit named."""
    _owner_only(actor, purchaser)
    if provider == purchaser:
        raise AgreementRefused("provider", "provider_is_other_region",
                               "an agreement is with another region: provider equals purchaser")
    agreement_id = legacy_agreement_id(purchaser, provider, care_area)
    if current is None:
        return Change(Agreement(agreement_id, purchaser, provider, (care_area,), AgreementStatus.REGISTERED, 1),
                      "agreement.registered")
    _not_ended(current)
    return None


def _terms_of(current: Agreement) -> AgreementTerms:
    if current.terms is None:  # drafts always have terms; this guards the invariant
        raise AgreementRefused("terms", "terms_required", f"agreement {current.agreement_id!r} has no terms")
    return current.terms
