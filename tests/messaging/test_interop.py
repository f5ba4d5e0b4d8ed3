"""A region's own system interoperates with nothing but a JOSE library and the published keys.

The region's side here is `jwcrypto`, a JOSE library other than the one the project uses, given
only what a region has: the JWK Sets published beside the address book (`jwks/<org>.json`), its
own private keys (standard PKCS#8 PEM files), and the profile in `notifiers.envelope`'s docstring.
No project code makes or reads the region's side of a message.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from jwcrypto import jwe, jwk, jws
from jwcrypto.common import JWException, json_encode

from events import SecureMessageSubmitted
from marketplace.lifecycle import CaseStatus
from marketplace.services.directory import Federation
from marketplace.services.lifecycle import load_case
from marketplace.services.messaging import MARKETPLACE_ORG, verify_sealed
from notifiers.envelope import compose
from notifiers.message_types import MatchNotice
from notifiers.receipts import (
    MessageRejected,
    ReceiptCode,
    ReceiptDetail,
    ReceiptStatus,
    new_receipt,
    sign_receipt,
    verify_receipt,
)
from notifiers.receiving import InMemorySeenMessages, receive
from tests.messaging.conftest import CASE, HOME, HOME_ORG, MATCH, PROVIDER_ORG, UNIT, entry, open_case, staged, store

GOTLAND_ORG = "212000-0803"


# --- what a region's system has --------------------------------------------------------------


def published(federation: Federation, org: str) -> jwk.JWKSet:
    _ = federation.book  # provisions the keys (and publishes them) on first use
    return jwk.JWKSet.from_json((federation.directory / "jwks" / f"{org}.json").read_text())


def own_key(federation: Federation, org: str, kid: str) -> jwk.JWK:
    """A region's own private key, from its own key store's PEM file, by its published kid."""
    key = jwk.JWK.from_pem((federation.directory / org / f"{kid}.pem").read_bytes())
    return jwk.JWK(**{**key.export(as_dict=True), "kid": kid})


def current_kid(federation: Federation, org: str, use: str) -> str:
    """The current key for `use` (the last published; older ones stay listed, retired)."""
    return str([k for k in published(federation, org)["keys"] if k.get("use") == use][-1]["kid"])


def by_kid(key_set: jwk.JWKSet, kid: str) -> jwk.JWK:
    key = key_set.get_key(kid)
    assert key is not None, kid
    return key


def region_open(raw: bytes, federation: Federation, me: str, sender: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify and decrypt as the profile says, with jwcrypto: (routing header, body)."""
    outer = jws.JWS()
    outer.deserialize(raw.decode("ascii"))
    assert outer.jose_header["typ"] == "nvf-message+jws"
    outer.verify(by_kid(published(federation, sender), outer.jose_header["kid"]))
    inner = jwe.JWE()
    inner.deserialize(outer.payload.decode("ascii"))
    header = inner.jose_header
    assert (header["alg"], header["enc"], header["typ"]) == ("ECDH-ES+A256KW", "A256GCM", "nvf-body+jwe")
    routing = header["nvf"]
    # The sender named in the AEAD-bound header holds the key that signed.
    assert routing["sender_org"] == sender and routing["sender_key_id"] == outer.jose_header["kid"]
    inner.decrypt(own_key(federation, me, header["kid"]))
    return routing, json.loads(inner.plaintext)


def region_seal(federation: Federation, body: dict[str, Any], *, sender: str, recipient: str, address: str,
                message_type: str, encrypt_to: str | None = None, conversation_id: str = CASE,
                alg: str = "Ed25519", **routing: Any) -> bytes:
    """Make a message as the profile says, with jwcrypto."""
    signing = own_key(federation, sender, current_kid(federation, sender, "sig"))
    encryption = by_kid(published(federation, encrypt_to or recipient),
                        current_kid(federation, encrypt_to or recipient, "enc"))
    header = {"format": "nvf-jose/1", "message_id": str(uuid.uuid4()),
              "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
              "conversation_id": conversation_id, "in_reply_to": None, "sender_org": sender,
              "recipient_org": recipient, "recipient_address": address, "message_type": message_type,
              "label": "", "confidential": False, "sender_key_id": signing["kid"],
              "recipient_key_id": encryption["kid"], **routing}
    protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": header["recipient_key_id"], "typ": "nvf-body+jwe",
                 "cty": "json", "nvf": header}
    inner = jwe.JWE(json.dumps(body).encode(), protected=json_encode(protected))
    inner.add_recipient(encryption)
    outer = jws.JWS(inner.serialize(compact=True).encode("ascii"))
    outer.add_signature(signing, alg=alg, protected=json_encode(
        {"alg": alg, "kid": signing["kid"], "typ": "nvf-message+jws", "cty": "nvf-body+jwe"}))
    return outer.serialize(compact=True).encode("ascii")


NOTICE = {"match_id": MATCH, "case_ref": CASE, "offer_id": "off-01", "request_id": "req-25"}


def _notice_from_the_marketplace(federation: Federation) -> bytes:
    # What the notifier does for a match notice (`Notifier`): compose, signed as the marketplace.
    recipient = federation.book.get(HOME_ORG)
    assert recipient is not None
    return compose(MatchNotice(**NOTICE), sender=federation.signer, recipient=recipient,
                   conversation_id=CASE).to_bytes()


# --- the marketplace's messages, opened by a region ------------------------------------------


def test_a_region_opens_and_verifies_the_notifiers_message_with_another_library(federation: Federation) -> None:
    routing, body = region_open(_notice_from_the_marketplace(federation), federation, HOME_ORG, MARKETPLACE_ORG)
    assert body == NOTICE
    assert (routing["message_type"], routing["recipient_org"], routing["conversation_id"]) == (
        "match.notice", HOME_ORG, CASE)


def test_a_region_refuses_a_notifier_message_tampered_on_the_way(federation: Federation) -> None:
    header, payload, signature = _notice_from_the_marketplace(federation).split(b".")
    changed = payload[:40] + (b"A" if payload[40:41] != b"A" else b"B") + payload[41:]
    with pytest.raises(JWException):
        region_open(b".".join((header, changed, signature)), federation, HOME_ORG, MARKETPLACE_ORG)


def test_a_region_cannot_open_what_was_sealed_for_another(federation: Federation) -> None:
    outer = jws.JWS()
    outer.deserialize(_notice_from_the_marketplace(federation).decode())
    inner = jwe.JWE()
    inner.deserialize(outer.objects["payload"].decode())
    with pytest.raises(JWException):
        inner.decrypt(own_key(federation, GOTLAND_ORG, current_kid(federation, GOTLAND_ORG, "enc")))


def test_a_region_verifies_the_marketplaces_receipt(federation: Federation) -> None:
    receipt = sign_receipt(new_receipt(MARKETPLACE_ORG, message_id=uuid.uuid4(), recipient_org=HOME_ORG),
                           federation.signer)
    token = jws.JWS()
    token.deserialize(receipt.to_bytes().decode())
    token.verify(by_kid(published(federation, MARKETPLACE_ORG), token.jose_header["kid"]))
    assert token.jose_header["typ"] == "nvf-receipt+jws"
    assert json.loads(token.payload)["message_id"] == str(receipt.receipt.message_id)


# --- a region's messages, accepted by the marketplace's side ---------------------------------


def _receive(federation: Federation, raw: bytes, recipient: str = PROVIDER_ORG) -> Any:
    return receive(raw, store(federation, recipient), federation.book, InMemorySeenMessages())


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA"])  # RFC 9864's name, and RFC 8037's for libraries before it
def test_a_message_a_region_made_with_another_library_is_accepted(federation: Federation, alg: str) -> None:
    raw = region_seal(federation, NOTICE, sender=HOME_ORG, recipient=PROVIDER_ORG, alg=alg,
                      address=federation.book.organisations[PROVIDER_ORG].addresses[0], message_type="match.notice")
    sealed = verify_sealed(raw, federation.book)  # what the marketplace checks before routing
    assert sealed.header.sender_org == HOME_ORG
    signed, opened = _receive(federation, raw)
    assert signed.receipt.status is ReceiptStatus.ACCEPTED
    assert opened is not None and opened.body == MatchNotice(**NOTICE)
    assert opened.header.message_id == sealed.header.message_id


def test_a_receipt_a_region_made_with_another_library_verifies(federation: Federation) -> None:
    signing = own_key(federation, PROVIDER_ORG, current_kid(federation, PROVIDER_ORG, "sig"))
    receipt = {"receipt_id": str(uuid.uuid4()), "created_at": datetime.now(UTC).isoformat(),
               "message_id": str(uuid.uuid4()), "issuer_org": PROVIDER_ORG, "recipient_org": HOME_ORG,
               "status": "ACCEPTED", "code": None, "detail": None, "reason": ""}
    token = jws.JWS(json.dumps(receipt).encode())
    token.add_signature(signing, alg="Ed25519", protected=json_encode(
        {"alg": "Ed25519", "kid": signing["kid"], "typ": "nvf-receipt+jws", "cty": "json"}))
    verified = verify_receipt(token.serialize(compact=True).encode(), federation.book)
    assert (str(verified.message_id), verified.status) == (receipt["message_id"], ReceiptStatus.ACCEPTED)


def _security(federation: Federation, raw: bytes) -> None:
    with pytest.raises(MessageRejected) as caught:
        verify_sealed(raw, federation.book)
    assert caught.value.detail is ReceiptDetail.SECURITY


def test_a_region_message_with_a_tampered_header_is_refused(federation: Federation) -> None:
    raw = region_seal(federation, NOTICE, sender=HOME_ORG, recipient=PROVIDER_ORG,
                      address=federation.book.organisations[PROVIDER_ORG].addresses[0], message_type="match.notice")
    header, payload, signature = raw.split(b".")
    inner = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)).decode().split(".")
    routing = json.loads(base64.urlsafe_b64decode(inner[0] + "=" * (-len(inner[0]) % 4)))
    routing["nvf"]["label"] = "changed on the way"
    inner[0] = base64.urlsafe_b64encode(json.dumps(routing).encode()).decode().rstrip("=")
    changed = base64.urlsafe_b64encode(".".join(inner).encode()).rstrip(b"=")
    _security(federation, b".".join((header, changed, signature)))


def test_a_region_message_encrypted_to_the_wrong_key_is_refused(federation: Federation) -> None:
    # Signed properly and addressed to the provider, but encrypted to Gotland's key.
    raw = region_seal(federation, NOTICE, sender=HOME_ORG, recipient=PROVIDER_ORG, encrypt_to=GOTLAND_ORG,
                      address=federation.book.organisations[PROVIDER_ORG].addresses[0], message_type="match.notice",
                      recipient_key_id=federation.book.organisations[PROVIDER_ORG].current_key("encryption").key_id)
    verify_sealed(raw, federation.book)  # the signature is fine: the marketplace cannot tell
    signed, opened = _receive(federation, raw)
    assert opened is None
    assert (signed.receipt.code, signed.receipt.detail) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_region_message_re_signed_by_another_organisation_is_refused(federation: Federation) -> None:
    raw = region_seal(federation, NOTICE, sender=HOME_ORG, recipient=PROVIDER_ORG,
                      address=federation.book.organisations[PROVIDER_ORG].addresses[0], message_type="match.notice")
    inner = jws.JWS()
    inner.deserialize(raw.decode())
    gotland = own_key(federation, GOTLAND_ORG, current_kid(federation, GOTLAND_ORG, "sig"))
    for claimed_kid in (gotland["kid"], inner.jose_header["kid"]):  # its own kid, or the sender's
        resigned = jws.JWS(inner.objects["payload"])
        resigned.add_signature(gotland, alg="Ed25519", protected=json_encode(
            {"alg": "Ed25519", "kid": claimed_kid, "typ": "nvf-message+jws", "cty": "nvf-body+jwe"}))
        _security(federation, resigned.serialize(compact=True).encode())


@pytest.mark.integration
async def test_a_referral_a_region_made_with_another_library_is_routed(database, ctx, marketplace_notifier,
                                                                       federation: Federation) -> None:
    # Through the marketplace's front door: the submission is checked, routed and delivered unread.
    from tests.messaging.test_routing import WHO

    async with database.session() as session:
        await open_case(session, ctx, until="patient_accepted")
        referral = {"match_id": MATCH, "case_ref": CASE, "care_area": "cataract",
                    "personal_identity_number": WHO.personal_identity_number, "given_name": WHO.given_name,
                    "family_name": WHO.family_name, "clinical_summary": "Synthetic summary."}
        raw = region_seal(federation, referral, sender=HOME_ORG, recipient=PROVIDER_ORG, address=UNIT,
                          message_type="referral", confidential=True, label="Remiss")
        submitted = SecureMessageSubmitted(case_ref=CASE, sealed=base64.b64encode(raw).decode())
        await marketplace_notifier.on_submissions(session, [entry(submitted, HOME)], ctx)
        (delivered,) = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        state = await load_case(session, CASE, ctx)
    assert base64.b64decode(delivered.sealed) == raw
    assert state is not None and state.status is CaseStatus.REFERRED
    # And the unit (its system, with the other library) opens what was delivered.
    routing, body = region_open(raw, federation, PROVIDER_ORG, HOME_ORG)
    assert body == referral and routing["recipient_address"] == UNIT


def test_the_published_jwks_are_standard_files(federation: Federation) -> None:
    for org in (HOME_ORG, PROVIDER_ORG, MARKETPLACE_ORG):
        keys = published(federation, org)["keys"]
        assert {(k["kty"], k.get("crv"), k.get("use")) for k in keys} == {
            ("OKP", "Ed25519", "sig"), ("OKP", "X25519", "enc")}
        assert not any(k.has_private for k in keys)
