"""Refusing a region's input: the field and the rule it broke, in words the sender can act on.

A refusal never repeats what was sent (an id, a code, a note could hold a patient's identity, and
rejections travel in the clear): the message says what the rule is, not what broke it."""

from __future__ import annotations

from matchers.validation import Violation


class Refused(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message

    @classmethod
    def from_violation(cls, v: Violation) -> Refused:
        # The domain's own messages name the offending value (useful offline, for a file's author).
        return cls(f"payload.{v.field}", v.rule, RULES.get(v.rule, f"breaks the rule {v.rule}"))


RULES: dict[str, str] = {
    "known_region": "is not a known region code",
    "known_care_area": "is not a known care area",
    "positive_capacity": "capacity must be greater than 0",
    "non_negative": "must not be negative",
    "window_order": "window_end is before window_start",
    "unique_id": "is already used by another item",
}
