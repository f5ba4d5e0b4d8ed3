"""Receipts: consistent codes, signed by the issuer, refused when forged."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from notifiers import crypto
from notifiers.receipts import (
    DETAIL_CODES,
    MessageRejected,
    Receipt,
    ReceiptCode,
    ReceiptDetail,
    ReceiptInvalid,
    ReceiptStatus,
    SignedReceipt,
    new_receipt,
    receipt_received_payload,
    sign_receipt,
    verify_receipt,
)
from tests.notifiers.conftest import GOTLAND, STOCKHOLM, UPPSALA, Federation

T0 = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_every_detail_has_its_code() -> None:
    assert set(DETAIL_CODES) == set(ReceiptDetail)
    assert DETAIL_CODES[ReceiptDetail.SECURITY] is ReceiptCode.SIG
    assert DETAIL_CODES[ReceiptDetail.STRUCTURE] is ReceiptCode.SV
    assert DETAIL_CODES[ReceiptDetail.DUPLICATE] is ReceiptCode.BV


@pytest.mark.parametrize("fields", [
    dict(status="ACCEPTED", code="BV", detail="duplicate"),
    dict(status="REJECTED"),
    dict(status="REJECTED", code="SV", detail="security"),
])
def test_inconsistent_receipts_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Receipt.model_validate(dict(receipt_id=uuid.uuid4(), created_at=T0, message_id=None,
                                    issuer_org=UPPSALA, recipient_org=None, **fields))


def _signed(federation: Federation) -> SignedReceipt:
    rejection = MessageRejected(ReceiptDetail.NOT_SUPPORTED, "lab.result", message_id=uuid.uuid4())
    receipt = new_receipt(UPPSALA, message_id=rejection.message_id, recipient_org=STOCKHOLM,
                          rejection=rejection, now=T0)
    return sign_receipt(receipt, federation.store(UPPSALA))


def test_a_signed_receipt_verifies(federation: Federation) -> None:
    signed = _signed(federation)
    receipt = verify_receipt(signed.to_bytes(), federation.book)
    assert (receipt.status, receipt.code, receipt.detail) == (
        ReceiptStatus.REJECTED, ReceiptCode.BV, ReceiptDetail.NOT_SUPPORTED)
    event = receipt_received_payload(receipt, case_ref="CASE-1")
    assert (event.status, event.code, event.detail) == ("REJECTED", "BV", "not-supported")


def test_a_changed_receipt_is_refused(federation: Federation) -> None:
    header, payload, signature = _signed(federation).to_bytes().split(b".")
    data = json.loads(crypto.b64url_decode_strict(payload.decode()))
    data.update(status="ACCEPTED", code=None, detail=None)
    changed = crypto.b64url(crypto.canonical_json(data)).encode()
    with pytest.raises(ReceiptInvalid, match="signature"):
        verify_receipt(b".".join((header, changed, signature)), federation.book)


def test_a_message_signature_does_not_pass_for_a_receipt(federation: Federation) -> None:
    # Same key, same kind of JWS: the typ tells them apart.
    receipt = _signed(federation).receipt
    token = federation.store(UPPSALA).sign_compact({"typ": "nvf-message+jws", "cty": "json"},
                                                    crypto.canonical_json(receipt.model_dump(mode="json")))
    with pytest.raises(ReceiptInvalid, match="typ"):
        verify_receipt(token.encode(), federation.book)


def test_a_receipt_signed_by_someone_else_is_refused(federation: Federation) -> None:
    # Gotland signs a receipt that claims to come from Uppsala.
    receipt = new_receipt(UPPSALA, message_id=uuid.uuid4(), recipient_org=STOCKHOLM, now=T0)
    with pytest.raises(ValueError, match="issuer"):
        sign_receipt(receipt, federation.store(GOTLAND))
    payload = crypto.canonical_json(receipt.model_dump(mode="json"))
    forged = SignedReceipt(receipt=receipt, token=federation.store(GOTLAND).sign_compact(
        {"typ": "nvf-receipt+jws", "cty": "json"}, payload))
    with pytest.raises(ReceiptInvalid, match="no valid signing key"):
        verify_receipt(forged.to_bytes(), federation.book)


@pytest.mark.parametrize("raw", [b"", b"{}", b"[1]", b"x" * 70_000])
def test_garbage_is_not_a_receipt(federation: Federation, raw: bytes) -> None:
    with pytest.raises(ReceiptInvalid):
        verify_receipt(raw, federation.book)
