"""Which party may send which secure message to whom and when: the pure rule, no database."""

from __future__ import annotations

from marketplace.lifecycle import CaseStatus
from marketplace.lifecycle.message_routes import route_refusal
from notifiers.receipts import ReceiptDetail
from tests.lifecycle.journey import HOME, PROVIDER, reach

ORGS = {HOME: "232100-0016", PROVIDER: "232100-0123"}
HOME_ORG, PROVIDER_ORG = ORGS[HOME], ORGS[PROVIDER]
UNIT = "SE2321000016-UNIT"  # the unit of the journey's match


def test_a_referral_goes_from_home_to_the_matched_unit_once_the_patient_accepted() -> None:
    accepted = reach(CaseStatus.PATIENT_ACCEPTED).case
    assert route_refusal("referral", HOME_ORG, PROVIDER_ORG, UNIT, accepted, ORGS) is None
    early = reach(CaseStatus.PROVIDER_ACCEPTED).case
    refused = route_refusal("referral", HOME_ORG, PROVIDER_ORG, UNIT, early, ORGS)
    assert refused is not None and refused.detail is ReceiptDetail.FORBIDDEN and "provider_accepted" in refused.reason
    elsewhere = route_refusal("referral", HOME_ORG, PROVIDER_ORG, "SE2321000016-OTHER", accepted, ORGS)
    assert elsewhere is not None and "matched unit" in elsewhere.reason


def test_each_message_goes_between_its_parties_only() -> None:
    performed = reach(CaseStatus.PERFORMED).case
    assert route_refusal("care.performed", PROVIDER_ORG, HOME_ORG, None, performed, ORGS) is None
    assert route_refusal("invoice", PROVIDER_ORG, HOME_ORG, None, performed, ORGS) is None
    backwards = route_refusal("invoice", HOME_ORG, PROVIDER_ORG, None, performed, ORGS)
    assert backwards is not None and backwards.reason == "invoice is sent by the provider region"
    astray = route_refusal("care.performed", PROVIDER_ORG, "232100-0024", None, performed, ORGS)
    assert astray is not None and astray.reason == "care.performed goes to the home region"


def test_the_marketplaces_notices_unknown_types_and_unmatched_cases_are_refused() -> None:
    matched, on_book = reach(CaseStatus.MATCH_PROPOSED).case, reach(CaseStatus.ON_BOOK).case
    notice = route_refusal("match.notice", HOME_ORG, PROVIDER_ORG, None, matched, ORGS)
    assert notice is not None and notice.detail is ReceiptDetail.FORBIDDEN
    unknown = route_refusal("gossip", HOME_ORG, PROVIDER_ORG, None, matched, ORGS)
    assert unknown is not None and unknown.detail is ReceiptDetail.NOT_SUPPORTED
    unmatched = route_refusal("referral", HOME_ORG, PROVIDER_ORG, UNIT, on_book, ORGS)
    assert unmatched is not None and "has no match" in unmatched.reason
