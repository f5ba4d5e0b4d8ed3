"""Parties' commands on a case, as they arrive on the bus (`case.command`).

Each party may only say what is theirs to say: the providing region answers for its offer and
reports the care, the home region speaks for its patient and pays, the sweeper (`scheduler`)
expires holds and raises warnings, operators may cancel or close.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from events import CaseCommandIssued, Envelope
from events.parties import INTAKE
from marketplace.lifecycle import COMMAND_TYPES, CaseState, Command, DomainError
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.refusal import Refused

SCHEDULER = "scheduler"
OPERATOR = "operator"

PROVIDER_COMMANDS = {"accept_match", "decline_match", "acknowledge_referral", "schedule", "record_performed",
                     "record_follow_up", "invoice"}
HOME_COMMANDS = {"offer_to_patient", "record_patient_answer", "withdraw", "record_payment"}
SCHEDULER_COMMANDS = {"expire_hold", "expire_case", "escalate_referral", "warn_guarantee"}
OPERATOR_COMMANDS = {"cancel", "close"}

COMMANDS_BY_NAME: dict[str, type[Command]] = {cls.NAME: cls for cls in COMMAND_TYPES}
_adapters: dict[str, TypeAdapter[Any]] = {}


def build_command(issued: CaseCommandIssued, command_id: Any) -> Command:
    """The lifecycle command the bus event asks for; refuses unknown or ill-typed arguments."""
    cls = COMMANDS_BY_NAME[issued.command]
    adapter = _adapters.setdefault(issued.command, TypeAdapter(cls))
    try:
        return adapter.validate_python({**issued.args, "case_ref": issued.case_ref, "command_id": command_id})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Refused(f"payload.args.{where}", first["type"], first["msg"]) from exc


def authorise(producer: str, command: str, state: CaseState | None) -> None:
    if state is None:
        raise Refused("payload.case_ref", "known_case", "no such case")
    if command in SCHEDULER_COMMANDS:
        allowed = {SCHEDULER}
    elif command in OPERATOR_COMMANDS:
        allowed = {OPERATOR, state.home_region}
    elif command in HOME_COMMANDS:
        allowed = {state.home_region}
    elif state.match is not None:
        allowed = {state.match.providing_region}
    else:
        allowed = set()
    if producer not in allowed:
        raise Refused("producer", "party_to_case",
                      f"{producer!r} may not {command} case {state.case_ref} "
                      f"(may: {', '.join(sorted(allowed)) or 'nobody now'})")


async def apply(ledger: CaseLedger, envelope: Envelope, issued: CaseCommandIssued) -> None:
    if issued.command not in COMMANDS_BY_NAME:
        raise Refused("payload.command", "known_command", f"unknown command {issued.command!r}")
    authorise(envelope.producer, issued.command, await ledger.state(issued.case_ref))
    command = build_command(issued, envelope.event_id)
    try:
        # The mirrors on the cases stream are intake's: the party's say-so was checked above.
        await ledger.apply(command, correlation_id=envelope.correlation_id, producer=INTAKE)
    except DomainError as exc:
        raise Refused("payload.command", type(exc).__name__, str(exc)) from exc
