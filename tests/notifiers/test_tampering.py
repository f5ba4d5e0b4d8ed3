"""One flipped bit anywhere is noticed: never ACCEPTED, and SIG whenever the result still reads
as a message (a flip that breaks the JSON itself is a syntax error, SV)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifiers import crypto
from notifiers.envelope import SealedMessage, compose
from notifiers.message_types import Referral
from notifiers.receipts import ReceiptCode, ReceiptDetail, ReceiptStatus, verify_receipt
from notifiers.receiving import InMemorySeenMessages, receive
from tests.notifiers.conftest import GOTLAND, STOCKHOLM, UPPSALA, Federation, resign

# Module-scoped fixtures are reused across examples on purpose: the message is fixed, the flip varies.
_SETTINGS = settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])

HEADER_STRING_FIELDS = ("message_id", "created_at", "conversation_id", "sender_org", "recipient_org",
                        "recipient_address", "message_type", "label", "sender_key_id", "recipient_key_id",
                        "format")


@pytest.fixture(scope="module")
def sealed(federation: Federation) -> SealedMessage:
    body = Referral(match_id="M-7", case_ref="CASE-7", care_area="cataract",
                    personal_identity_number="19121212-1212", given_name="Tolvan", family_name="Tolvansson",
                    clinical_summary="Katarakt bilateralt. " * 200)
    return compose(body, sender=federation.store(STOCKHOLM), recipient=federation.book.organisations[UPPSALA],
                   label="Remiss katarakt", conversation_id="M-7")


def _flip(raw: bytes, bit: int) -> bytes:
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _still_canonical(raw: bytes) -> bool:
    try:
        return crypto.canonical_json(json.loads(raw)) == raw
    except (ValueError, RecursionError):
        return False


def _value_spans(raw: bytes, data: dict[str, Any]) -> list[tuple[int, int]]:
    """Byte spans of the header's string values and of the ciphertext, in the wire form."""
    spans = []
    items = [(f'"{field}":', data["header"][field]) for field in HEADER_STRING_FIELDS]
    items.append(('"ciphertext":', data["ciphertext"]))
    for prefix, value in items:
        needle = (prefix + json.dumps(value, ensure_ascii=False)).encode()
        start = raw.index(needle) + len(prefix.encode()) + 1  # inside the opening quote
        spans.append((start, start + len(needle) - len(prefix.encode()) - 2))
    return spans


def _receive(federation: Federation, raw: bytes) -> tuple[ReceiptCode | None, ReceiptDetail | None]:
    signed, opened = receive(raw, federation.store(UPPSALA), federation.book, InMemorySeenMessages())
    assert signed.receipt.status is ReceiptStatus.REJECTED
    assert opened is None
    verify_receipt(signed.to_bytes(), federation.book)  # even a rejection is signed
    return signed.receipt.code, signed.receipt.detail


def test_the_untampered_message_is_accepted(federation: Federation, sealed: SealedMessage) -> None:
    signed, opened = receive(sealed.to_bytes(), federation.store(UPPSALA), federation.book,
                             InMemorySeenMessages())
    assert signed.receipt.status is ReceiptStatus.ACCEPTED and opened is not None


@_SETTINGS
@given(data=st.data())
def test_a_flipped_bit_in_a_header_value_or_the_body_is_sig(federation: Federation, sealed: SealedMessage,
                                                            data: st.DataObject) -> None:
    raw = sealed.to_bytes()
    spans = _value_spans(raw, json.loads(raw))
    start, end = data.draw(st.sampled_from(spans), label="field")
    byte = data.draw(st.integers(start, end - 1), label="byte")
    tampered = _flip(raw, byte * 8 + data.draw(st.integers(0, 7), label="bit"))
    expected = ((ReceiptCode.SIG, ReceiptDetail.SECURITY) if _still_canonical(tampered)
                else (ReceiptCode.SV, ReceiptDetail.STRUCTURE))
    assert _receive(federation, tampered) == expected


@_SETTINGS
@given(data=st.data())
def test_a_flipped_bit_anywhere_is_never_accepted(federation: Federation, sealed: SealedMessage,
                                                  data: st.DataObject) -> None:
    raw = sealed.to_bytes()
    tampered = _flip(raw, data.draw(st.integers(0, len(raw) * 8 - 1), label="bit"))
    code, detail = _receive(federation, tampered)
    # SV only when the flip broke the JSON or renamed one of the fields needed to find the signer.
    assert (code, detail) in {(ReceiptCode.SIG, ReceiptDetail.SECURITY),
                              (ReceiptCode.SV, ReceiptDetail.STRUCTURE)}


@_SETTINGS
@given(data=st.data())
def test_a_flipped_ciphertext_bit_fails_decryption_even_when_re_signed(
        federation: Federation, sealed: SealedMessage, data: st.DataObject) -> None:
    # Even a sender holding a valid key cannot get a modified ciphertext decrypted: AES-GCM's tag.
    message = json.loads(sealed.to_bytes())
    ciphertext = crypto.b64decode_strict(message["ciphertext"])
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    message["ciphertext"] = crypto.b64encode(_flip(ciphertext, bit))
    assert _receive(federation, resign(message, federation.store(STOCKHOLM))) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)


@pytest.mark.parametrize("field,value", [("label", "Remiss katarakt!"), ("conversation_id", "M-8"),
                                         ("message_id", "00000000-0000-4000-8000-000000000000")])
def test_a_changed_header_fails_decryption_even_when_re_signed(
        federation: Federation, sealed: SealedMessage, field: str, value: str) -> None:
    # The header is the AES-GCM associated data: it cannot be changed under an existing body.
    message = json.loads(sealed.to_bytes())
    message["header"][field] = value
    assert _receive(federation, resign(message, federation.store(STOCKHOLM))) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_message_re_signed_by_another_region_does_not_decrypt(federation: Federation,
                                                                 sealed: SealedMessage) -> None:
    # Someone strips Stockholm's signature and signs as Gotland: valid signature, but the header
    # (sender) changed, so the body no longer decrypts.
    message = json.loads(sealed.to_bytes())
    gotland = federation.store(GOTLAND)
    message["header"]["sender_org"] = GOTLAND
    message["header"]["sender_key_id"] = gotland.signing_key_id
    assert _receive(federation, resign(message, gotland)) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_signature_by_an_unlisted_key_is_sig(federation: Federation, sealed: SealedMessage) -> None:
    message = json.loads(sealed.to_bytes())
    message["header"]["sender_key_id"] = "sig-" + "0" * 20
    assert _receive(federation, resign(message, federation.store(STOCKHOLM))) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_signature_in_non_canonical_base64_is_refused(federation: Federation,
                                                        sealed: SealedMessage) -> None:
    # 64 bytes is 88 base64 characters ending "=="; the last data character has 4 unused bits.
    message = json.loads(sealed.to_bytes())
    text = message["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    message["signature"] = text[:-3] + alphabet[last ^ 1] + "=="
    assert crypto.b64decode_strict(text) == base64.b64decode(message["signature"])
    raw = crypto.canonical_json(message)
    assert _receive(federation, raw) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)
