"""Domain errors: what the lifecycle refuses, and why, in terms a caller can act on."""

from __future__ import annotations

from marketplace.lifecycle.states import CaseStatus


class DomainError(Exception):
    """Base of every refusal by the lifecycle rules. Nothing was decided; no event exists."""


class IllegalTransition(DomainError):
    """The command is not legal in the case's current state.

    Carries the state and the commands that *are* legal there, so an API can answer 409 with
    something useful and a worker can log it without reading the rule table.
    """

    def __init__(self, command: str, state: CaseStatus | None, allowed: tuple[str, ...]) -> None:
        self.command = command
        self.state = state
        self.allowed = allowed
        shown = state.value if state is not None else "(no case)"
        super().__init__(
            f"cannot perform {command!r} in state {shown!r}; allowed: {', '.join(allowed) or 'nothing'}"
        )


class InvalidCommand(DomainError):
    """The command is legal in this state but its content breaks a rule (wrong match id,
    an offer this patient already declined, a payment larger than the invoice, ...)."""


class StaleCommand(DomainError):
    """The command was meant for an earlier situation of the case: a hold expiry for a match that
    has since been answered, a warning already raised. Safe to acknowledge and drop."""


class NotDueYet(DomainError):
    """A deadline command arrived before its deadline (a sweeper running ahead of its clock)."""
