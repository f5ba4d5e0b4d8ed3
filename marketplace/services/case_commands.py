"""Parties' commands on a case, as they arrive on the bus (`case.command`).

Each party may only say what is theirs to say (marketplace/lifecycle/parties.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import TypeAdapter, ValidationError

from events import CaseCommandIssued, Envelope
from events.parties import INTAKE
from marketplace.lifecycle import COMMAND_TYPES, CaseState, Command, DomainError
from marketplace.lifecycle.parties import parties_to, who_may
from marketplace.services.lifecycle import CaseLedger
from marketplace.services.refusals import Refused

COMMANDS_BY_NAME: dict[str, type[Command]] = {cls.NAME: cls for cls in COMMAND_TYPES}
_adapters: dict[str, TypeAdapter[Any]] = {}


def build_command(issued: CaseCommandIssued, command_id: Any) -> Command:
    """The lifecycle command the bus event asks for; refuses unknown or ill-typed arguments."""
    cls = COMMANDS_BY_NAME[issued.command]
    fields = {f.name for f in dataclasses.fields(cls)} - {"case_ref", "command_id", "note"}
    if set(issued.args) - fields:
        raise Refused("payload.args.*", "known_argument", f"{issued.command} takes only: {', '.join(sorted(fields))}")
    adapter = _adapters.get(issued.command)
    if adapter is None:  # built once per command: a TypeAdapter compiles a schema (not setdefault's argument)
        adapter = _adapters[issued.command] = TypeAdapter(cls)
    try:
        return adapter.validate_python({**issued.args, "case_ref": issued.case_ref, "command_id": command_id})
    except ValidationError as exc:
        first = exc.errors()[0]
        # A key the sender chose is named only when it is one of the command's own fields.
        where = ".".join(str(p) if isinstance(p, int) or p in fields else "*" for p in first["loc"])
        raise Refused(f"payload.args.{where}", first["type"], first["msg"]) from exc


def _unknown_case() -> Refused:
    return Refused("payload.case_ref", "known_case", "the sender has no case with this case_ref")


def authorise(producer: str, command: str, state: CaseState | None) -> None:
    if state is None:
        raise _unknown_case()
    if producer not in parties_to(state):
        # Refused exactly like a case that does not exist: a region learns nothing of a case that
        # is not its own, not even that it exists.
        raise _unknown_case()
    allowed = who_may(command, state)
    if producer not in allowed:
        raise Refused("producer", "party_to_case",
                      f"this party may not {command} the case (may: {', '.join(sorted(allowed)) or 'nobody now'})")


async def apply(ledger: CaseLedger, envelope: Envelope, issued: CaseCommandIssued) -> None:
    if issued.command not in COMMANDS_BY_NAME:
        raise Refused("payload.command", "known_command", "is not a known command")
    authorise(envelope.producer, issued.command, await ledger.state(issued.case_ref))
    command = build_command(issued, envelope.event_id)
    try:
        # The mirrors on the cases stream are intake's: the party's say-so was checked above.
        await ledger.apply(command, correlation_id=envelope.correlation_id, producer=INTAKE)
    except DomainError as exc:
        raise Refused("payload.command", type(exc).__name__, str(exc)) from exc
