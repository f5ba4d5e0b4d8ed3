"""The demo's patients are made up, in the real format: the referral accepts them, the header's
personnummer detector finds them."""

from __future__ import annotations

from demo_regions.identity import synthetic_identity
from notifiers.identifiers import check_personal_identity_number, contains_personal_identity_number


def test_synthetic_identities_are_valid_stable_and_distinct() -> None:
    refs = [f"case-25-cat-{i:04d}" for i in range(1, 301)]
    people = [synthetic_identity(ref) for ref in refs]
    for who in people:
        assert check_personal_identity_number(who.personal_identity_number)
        assert contains_personal_identity_number(f"patient {who.personal_identity_number[2:]}")
        assert who.given_name and who.family_name
    assert synthetic_identity(refs[0]) == people[0]
    assert len({p.personal_identity_number for p in people}) == len(people)
