"""Coded reasons: why a provider or patient declined, why a case was withdrawn, why a slot was
released. Codes, not free text, so that stats can count them and regions can act on them."""

from __future__ import annotations

from enum import StrEnum


class ProviderDeclineReason(StrEnum):
    NO_CAPACITY = "no_capacity"
    CLINICAL_CRITERIA = "clinical_criteria"
    OTHER = "other"


class PatientDeclineReason(StrEnum):
    TOO_FAR = "too_far"
    DATE_UNSUITABLE = "date_unsuitable"
    CHOSE_HOME_REGION = "chose_home_region"
    OTHER = "other"


class WithdrawalReason(StrEnum):
    """Why the home region takes the case back."""

    FOUND_SLOT_IN_HOME_REGION = "found_slot_in_home_region"
    CARE_NO_LONGER_NEEDED = "care_no_longer_needed"
    OTHER = "other"


class ReleaseCause(StrEnum):
    """Why a reserved slot went back to its offer."""

    PROVIDER_DECLINED = "provider_declined"
    PATIENT_DECLINED = "patient_declined"
    HOLD_EXPIRED = "hold_expired"
    WITHDRAWN = "withdrawn"
    CANCELLED = "cancelled"


class HoldPhase(StrEnum):
    """Who the hold is waiting for."""

    PROVIDER_ANSWER = "provider_answer"
    PATIENT_ANSWER = "patient_answer"
