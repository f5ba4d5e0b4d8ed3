"""Refusing a region's input: the field and the rule it broke, in words the sender can act on."""

from __future__ import annotations

from matchers.validation import Violation


class Refused(Exception):
    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message

    @classmethod
    def from_violation(cls, v: Violation) -> Refused:
        return cls(f"payload.{v.field}", v.rule, v.message)
