"""Who may say what on a case, as a pure rule (the bus and the API both ask it)."""

from __future__ import annotations

from marketplace.lifecycle import CaseStatus
from marketplace.lifecycle.parties import (
    HOME_COMMANDS,
    OPERATOR,
    PROVIDER_COMMANDS,
    SCHEDULER,
    parties_to,
    who_may,
)
from marketplace.lifecycle.states import TRANSITIONS
from tests.lifecycle.journey import HOME, PROVIDER, reach


def test_each_party_may_say_only_what_is_theirs() -> None:
    matched = reach(CaseStatus.MATCH_PROPOSED).case
    assert who_may("accept_match", matched) == {PROVIDER}
    assert who_may("record_patient_answer", matched) == {HOME}
    assert who_may("expire_hold", matched) == {SCHEDULER}
    assert who_may("cancel", matched) == {OPERATOR, HOME}
    # Commands nobody issues on the bus (the marketplace's own steps) are nobody's to say.
    assert who_may("propose_match", matched) == set()
    assert who_may("place_on_book", matched) == set()


def test_before_a_match_the_provider_commands_are_nobodys_and_no_other_region_is_a_party() -> None:
    on_book = reach(CaseStatus.ON_BOOK).case
    assert all(who_may(c, on_book) == set() for c in PROVIDER_COMMANDS)
    assert parties_to(on_book) == {HOME, SCHEDULER, OPERATOR}
    assert PROVIDER in parties_to(reach(CaseStatus.MATCH_PROPOSED).case)


def test_every_party_command_is_a_lifecycle_command() -> None:
    known = {t.command for t in TRANSITIONS}
    assert known >= PROVIDER_COMMANDS | HOME_COMMANDS
