"""Pure rules of the API: which claims make a caller, how a request is fingerprinted, problem bodies."""

from __future__ import annotations

import pytest

from marketplace.entrypoints.api.problems import invalid
from marketplace.entrypoints.api.schemas import OfferIn
from marketplace.entrypoints.api.tokens import ClaimsRefused, caller_from_claims
from marketplace.entrypoints.api.writes import api_field, fingerprint
from marketplace.services.api_clients import hash_secret, secret_matches

REGION = {"role": "region", "region_code": "01", "org_number": "232100-0016", "hsa_id": "SE2321000016-X1",
          "client_id": "c-1"}


def test_a_region_caller_speaks_on_its_own_channel():
    who = caller_from_claims(REGION, embedded=True)
    assert (who.party, who.region, who.is_operator) == ("01", "01", False)
    operator = caller_from_claims({"role": "operator", "sub": "ops"}, embedded=False)
    assert (operator.party, operator.region, operator.client_id) == ("operator", None, "ops")


@pytest.mark.parametrize("change", [
    {"role": "admin"}, {"region_code": "99"}, {"org_number": "232100-0024"}, {"hsa_id": "SE2321000024-X1"},
    {"hsa_id": "not-an-hsa-id"}, {"client_id": None}, {"region_code": 1},
])
def test_claims_that_do_not_hold_together_are_refused(change):
    with pytest.raises(ClaimsRefused):
        caller_from_claims({**REGION, **change}, embedded=True)


def test_a_fingerprint_is_the_request_as_the_model_reads_it():
    body = {"offer_id": "off-1", "unit_hsa_id": "SE2321000016-A", "care_area": "cataract", "capacity": 1,
            "window_start": "2026-03-02", "window_end": "2026-03-09", "price_sek": 10}
    reordered = dict(reversed(list(body.items())))
    assert fingerprint("POST", "/v1/offers", OfferIn.model_validate(body)) == \
        fingerprint("POST", "/v1/offers", OfferIn.model_validate(reordered))
    assert fingerprint("POST", "/v1/offers", OfferIn.model_validate(body)) != \
        fingerprint("POST", "/v1/offers", OfferIn.model_validate({**body, "capacity": 2}))


def test_problem_bodies_name_the_field_and_the_rule():
    body = invalid("capacity", "greater_than", "must be more than 0").body("/v1/offers")
    assert body["status"] == 422 and body["instance"] == "/v1/offers"
    assert body["invalid_params"] == [{"name": "capacity", "rule": "greater_than", "reason": "must be more than 0"}]
    assert api_field("payload.args.reason_code") == "reason_code" and api_field("payload.offer_id") == "offer_id"


def test_secrets_are_kept_as_salted_hashes():
    stored = hash_secret("s3cret")
    assert stored.startswith("scrypt$") and "s3cret" not in stored and stored != hash_secret("s3cret")
    assert secret_matches("s3cret", stored) and not secret_matches("other", stored)
