"""The receiving side: what is accepted, and every reason for a rejection."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc import jwe

from notifiers import crypto, envelope
from notifiers.envelope import MAX_MESSAGE_BYTES, MessageTooLarge, SealedMessage, compose, open_message
from notifiers.message_types import Referral, ReferralAnswer
from notifiers.receipts import (
    MessageRejected,
    ReceiptCode,
    ReceiptDetail,
    ReceiptStatus,
    verify_receipt,
)
from notifiers.receiving import InMemorySeenMessages, receive
from tests.notifiers.conftest import (
    GOTLAND,
    STOCKHOLM,
    UPPSALA,
    Federation,
    jwe_header,
    jwe_token,
    region_organisations,
    resign,
    with_jwe_header,
    with_routing,
)

REFERRAL = Referral(
    match_id="M-1", case_ref="CASE-1", care_area="cataract",
    personal_identity_number="19121212-1212", given_name="Tolvan", family_name="Tolvansson",
    clinical_summary="Grå starr höger öga, visus 0,3.",
)


def _reject(federation: Federation, raw: bytes, recipient: str = UPPSALA) -> tuple[ReceiptCode | None,
                                                                                    ReceiptDetail | None]:
    signed, opened = receive(raw, federation.store(recipient), federation.book, InMemorySeenMessages())
    assert opened is None
    assert signed.receipt.status is ReceiptStatus.REJECTED
    return signed.receipt.code, signed.receipt.detail


def _referral(federation: Federation, **kwargs: Any) -> SealedMessage:
    return compose(REFERRAL, sender=federation.store(STOCKHOLM),
                   recipient=federation.book.organisations[UPPSALA], **kwargs)


def test_the_recipient_decrypts_and_verifies(federation: Federation) -> None:
    sealed = _referral(federation, label="Remiss katarakt", conversation_id="M-1")
    signed, opened = receive(sealed.to_bytes(), federation.store(UPPSALA), federation.book,
                             InMemorySeenMessages())
    assert signed.receipt.status is ReceiptStatus.ACCEPTED
    assert signed.receipt.message_id == sealed.header.message_id
    assert signed.receipt.recipient_org == STOCKHOLM
    assert opened is not None
    assert opened.body == REFERRAL
    assert opened.header == sealed.header
    assert opened.header.confidential  # set from the type: a referral carries identity


def test_patient_identity_is_only_in_the_encrypted_body(federation: Federation) -> None:
    sealed = _referral(federation)
    raw = sealed.to_bytes()
    for secret in ("19121212-1212", "191212", "Tolvan", "Grå starr"):
        assert secret.encode() not in raw


def test_no_other_region_can_decrypt(federation: Federation) -> None:
    sealed = _referral(federation)
    token = jwe_token(sealed.to_bytes())
    others = [o.org_number for o in region_organisations() if o.org_number != UPPSALA]
    assert len(others) == 20
    for org in others:
        store = federation.store(org)
        # Neither with its own key, nor by claiming the recipient's key id (it does not hold it).
        for key_id in (store.encryption_key_id, sealed.header.recipient_key_id):
            with pytest.raises(crypto.CryptoError):
                store.decrypt_compact(key_id, token)
        # And through the front door, the message is simply not for them.
        assert _reject(federation, sealed.to_bytes(), recipient=org) == (ReceiptCode.BV,
                                                                        ReceiptDetail.NOT_FOUND)


def test_a_replay_is_rejected_as_duplicate_and_not_processed_twice(federation: Federation) -> None:
    raw = federation.notice().to_bytes()
    seen = InMemorySeenMessages()
    first, opened = receive(raw, federation.store(UPPSALA), federation.book, seen)
    again, reopened = receive(raw, federation.store(UPPSALA), federation.book, seen)
    assert first.receipt.status is ReceiptStatus.ACCEPTED and opened is not None
    assert again.receipt.status is ReceiptStatus.REJECTED and reopened is None
    assert (again.receipt.code, again.receipt.detail) == (ReceiptCode.BV, ReceiptDetail.DUPLICATE)
    assert again.receipt.message_id == first.receipt.message_id


def test_the_same_message_id_composed_again_is_a_duplicate(federation: Federation) -> None:
    message_id = uuid.uuid4()
    seen = InMemorySeenMessages()
    for expected in (ReceiptStatus.ACCEPTED, ReceiptStatus.REJECTED):
        raw = federation.notice(message_id=message_id).to_bytes()
        signed, _ = receive(raw, federation.store(UPPSALA), federation.book, seen)
        assert signed.receipt.status is expected


def test_a_rejected_message_is_not_remembered(federation: Federation) -> None:
    sealed = federation.notice(recipient=GOTLAND)
    seen = InMemorySeenMessages()
    signed, _ = receive(sealed.to_bytes(), federation.store(UPPSALA), federation.book, seen)
    assert signed.receipt.detail is ReceiptDetail.NOT_FOUND
    assert sealed.header.message_id not in seen


def test_unknown_recipient_organisation_is_not_found(federation: Federation) -> None:
    # a valid organisation number, not in the book
    raw = resign(with_routing(federation.notice().to_bytes(), recipient_org="556036-0793"),
                 federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.BV, ReceiptDetail.NOT_FOUND)


def test_unknown_functional_address_is_not_found(federation: Federation) -> None:
    raw = resign(with_routing(federation.notice().to_bytes(), recipient_address="SE2321000024-XYZ9"),
                 federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.BV, ReceiptDetail.NOT_FOUND)


def test_compose_refuses_an_address_of_another_organisation(federation: Federation) -> None:
    with pytest.raises(ValueError, match="not a functional address"):
        federation.notice(recipient_address="SE2321000016-NVF")


def test_an_oversized_message_is_too_long_before_parsing(federation: Federation) -> None:
    raw = federation.notice().to_bytes() + b" " * MAX_MESSAGE_BYTES
    signed, opened = receive(raw, federation.store(UPPSALA), federation.book, InMemorySeenMessages())
    assert opened is None
    assert (signed.receipt.code, signed.receipt.detail) == (ReceiptCode.SV, ReceiptDetail.TOO_LONG)
    assert signed.receipt.message_id is None  # never parsed, so the id was never read


def test_exactly_the_limit_is_not_too_long(federation: Federation) -> None:
    with pytest.raises(MessageRejected) as caught:
        open_message(b"{" + b" " * (MAX_MESSAGE_BYTES - 1), federation.store(UPPSALA), federation.book)
    assert caught.value.detail is ReceiptDetail.STRUCTURE


def test_compose_refuses_what_the_receiver_would_refuse(federation: Federation,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "MAX_MESSAGE_BYTES", 500)
    with pytest.raises(MessageTooLarge):
        federation.notice()


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"{}", b'{"header":1}', b"\xff\xfe",
                                 b"a.b.c", b"e30.e30.e30", b"[" * 100_000,
                                 crypto.b64url(b"[" * 10_000).encode() + b".e30.AA"])
def test_syntax_errors_are_structure(federation: Federation, raw: bytes) -> None:
    assert _reject(federation, raw) == (ReceiptCode.SV, ReceiptDetail.STRUCTURE)


def test_other_serializations_are_structure(federation: Federation) -> None:
    # Only the compact serialization is accepted: one encoding of the signed bytes.
    raw = federation.notice().to_bytes()
    header, payload, signature = raw.decode().split(".")
    flattened = json.dumps({"protected": header, "payload": payload, "signature": signature}).encode()
    for variant in (flattened, raw + b"\n", b" " + raw, raw.replace(b".", b". ", 1)):
        assert _reject(federation, variant) == (ReceiptCode.SV, ReceiptDetail.STRUCTURE)


def test_a_header_field_of_the_wrong_shape_is_structure(federation: Federation) -> None:
    raw = resign(with_routing(federation.notice().to_bytes(), created_at="yesterday"), federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.SV, ReceiptDetail.STRUCTURE)


def test_an_unknown_message_type_is_not_supported(federation: Federation) -> None:
    raw = resign(with_routing(federation.notice().to_bytes(), message_type="lab.result"), federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.BV, ReceiptDetail.NOT_SUPPORTED)


def test_identity_bearing_types_must_be_marked_confidential(federation: Federation) -> None:
    sealed = _referral(federation)
    raw = resign(with_routing(sealed.to_bytes(), confidential=False), federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.BV, ReceiptDetail.INVARIANT)
    with pytest.raises(ValueError, match="confidential"):
        _referral(federation, confidential=False)


def test_an_answer_must_name_what_it_answers(federation: Federation) -> None:
    answer = ReferralAnswer(match_id="M-1", case_ref="CASE-1", decision="accepted")
    with pytest.raises(ValueError, match="in_reply_to"):
        compose(answer, sender=federation.store(UPPSALA), recipient=federation.book.organisations[STOCKHOLM])
    sealed = compose(answer, sender=federation.store(UPPSALA),
                     recipient=federation.book.organisations[STOCKHOLM], in_reply_to=uuid.uuid4())
    signed, opened = receive(sealed.to_bytes(), federation.store(STOCKHOLM), federation.book,
                             InMemorySeenMessages())
    assert signed.receipt.status is ReceiptStatus.ACCEPTED and opened is not None
    raw = resign(with_routing(sealed.to_bytes(), in_reply_to=None), federation.store(UPPSALA))
    assert _reject(federation, raw, recipient=STOCKHOLM) == (
        ReceiptCode.BV, ReceiptDetail.INVARIANT)


def test_a_body_that_is_not_its_type_is_structure(federation: Federation) -> None:
    # A sender bug, signed and encrypted properly: the body decrypts but is not a match notice.
    header = {k: v for k, v in jwe_header(federation.notice().to_bytes()).items() if k != "epk"}
    recipient_key = federation.book.organisations[UPPSALA].current_key("encryption")
    token = jwe.encrypt_compact(header, b'{"match_id":"M-1"}', recipient_key.okp_key(), registry=crypto.JWE_REGISTRY)
    raw = resign(token, federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.SV, ReceiptDetail.STRUCTURE)


def test_the_label_may_not_carry_a_personal_identity_number(federation: Federation) -> None:
    with pytest.raises(ValueError, match="personal identity number"):
        federation.notice(label="Remiss 19121212-1212")
    # An organisation number is not a personal identity number.
    assert federation.notice(label="Till 232100-0024").header.label == "Till 232100-0024"


def test_created_at_must_be_utc(federation: Federation) -> None:
    from datetime import timedelta, timezone

    with pytest.raises(ValueError, match="UTC"):
        federation.notice(created_at=datetime(2026, 3, 9, 9, 0, tzinfo=timezone(timedelta(hours=1))))
    assert federation.notice(created_at=datetime(2026, 3, 9, 8, 0, tzinfo=UTC)).header.created_at.tzinfo


def test_the_receipt_is_signed_by_the_receiver(federation: Federation) -> None:
    signed, _ = receive(federation.notice().to_bytes(), federation.store(UPPSALA), federation.book,
                        InMemorySeenMessages())
    receipt = verify_receipt(signed.to_bytes(), federation.book)
    assert receipt == signed.receipt
    assert receipt.issuer_org == UPPSALA


def test_a_message_read_back_from_an_outbox_is_byte_identical(federation: Federation) -> None:
    raw = _referral(federation).to_bytes()
    again = SealedMessage.from_bytes(raw).to_bytes()
    assert again == raw
    signed, _ = receive(again, federation.store(UPPSALA), federation.book, InMemorySeenMessages())
    assert signed.receipt.status is ReceiptStatus.ACCEPTED


@pytest.mark.parametrize("changes", [
    {"epk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, {"epk": "x"}, {"zip": "DEF"},
    {"enc": "A128GCM"}, {"alg": "dir"}, {"typ": "JWT"}, {"kid": "enc-" + "0" * 20},
])
def test_a_jwe_outside_the_profile_is_structure_even_when_signed(federation: Federation,
                                                                 changes: dict[str, Any]) -> None:
    raw = resign(with_jwe_header(federation.notice().to_bytes(), **changes), federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.SV, ReceiptDetail.STRUCTURE)


def test_a_malformed_ephemeral_key_is_refused_not_a_crash(federation: Federation) -> None:
    # The low-order (all-zero) X25519 point: no shared secret to derive.
    epk = {"kty": "OKP", "crv": "X25519", "x": crypto.b64url(bytes(32))}
    raw = resign(with_jwe_header(federation.notice().to_bytes(), epk=epk), federation.store(STOCKHOLM))
    assert _reject(federation, raw) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)
