"""One flipped bit anywhere is noticed: never ACCEPTED, and SIG whenever the result still reads
as a message (a flip that breaks the compact form or the readable headers is a syntax error, SV)."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifiers import crypto
from notifiers.envelope import SealedMessage, compose
from notifiers.message_types import Referral
from notifiers.receipts import ReceiptCode, ReceiptDetail, ReceiptStatus, verify_receipt
from notifiers.receiving import InMemorySeenMessages, receive
from tests.notifiers.conftest import (
    GOTLAND,
    STOCKHOLM,
    UPPSALA,
    Federation,
    jwe_header,
    jwe_token,
    resign,
    with_routing,
)

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


def _reads_as_a_message(raw: bytes) -> bool:
    """Whether the sender and key can still be read (else the flip is SV, never SIG)."""
    try:
        header = json.loads(crypto.b64url_decode_strict(raw.split(b".")[0].decode()))
        return (re.fullmatch(rb"[\w-]+\.[\w-]+\.[\w-]+", raw, re.ASCII) is not None
                and isinstance(header, dict) and isinstance(header.get("kid"), str)
                and re.fullmatch(r"[\w-]+\.[\w-]*(\.[\w-]+){3}", jwe_token(raw), re.ASCII) is not None
                and isinstance(jwe_header(raw).get("nvf", {}).get("sender_org"), str))
    except (ValueError, RecursionError, AttributeError, IndexError):
        return False


def _with_jwe(raw: bytes, token: str) -> bytes:
    """The message with its JWE replaced, the original signature kept."""
    header, _, signature = raw.split(b".")
    return b".".join((header, crypto.b64url(token.encode()).encode(), signature))


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
    # Flipped inside the JWE (a routing header value, or the ciphertext), under the original signature.
    raw = sealed.to_bytes()
    parts = jwe_token(raw).split(".")
    header_json = crypto.b64url_decode_strict(parts[0])
    routing = jwe_header(raw)["nvf"]
    if data.draw(st.booleans(), label="in the header"):
        field = data.draw(st.sampled_from(HEADER_STRING_FIELDS), label="field")
        needle = json.dumps(routing[field], separators=(",", ":")).encode()
        start = header_json.index(b'"' + field.encode() + b'":' + needle) + len(field) + 4
        byte = data.draw(st.integers(start, start + len(needle) - 3), label="byte")
        parts[0] = crypto.b64url(_flip(header_json, byte * 8 + data.draw(st.integers(0, 7), label="bit")))
    else:
        ciphertext = crypto.b64url_decode_strict(parts[3])
        bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
        parts[3] = crypto.b64url(_flip(ciphertext, bit))
    tampered = _with_jwe(raw, ".".join(parts))
    expected = ((ReceiptCode.SIG, ReceiptDetail.SECURITY) if _reads_as_a_message(tampered)
                else (ReceiptCode.SV, ReceiptDetail.STRUCTURE))
    assert _receive(federation, tampered) == expected


@_SETTINGS
@given(data=st.data())
def test_a_flipped_bit_anywhere_is_never_accepted(federation: Federation, sealed: SealedMessage,
                                                  data: st.DataObject) -> None:
    raw = sealed.to_bytes()
    tampered = _flip(raw, data.draw(st.integers(0, len(raw) * 8 - 1), label="bit"))
    code, detail = _receive(federation, tampered)
    # SV only when the flip broke the compact form or the readable headers needed to find the signer.
    assert (code, detail) in {(ReceiptCode.SIG, ReceiptDetail.SECURITY),
                              (ReceiptCode.SV, ReceiptDetail.STRUCTURE)}
    if _reads_as_a_message(tampered):
        assert (code, detail) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


@_SETTINGS
@given(data=st.data())
def test_a_flipped_ciphertext_bit_fails_decryption_even_when_re_signed(
        federation: Federation, sealed: SealedMessage, data: st.DataObject) -> None:
    # Even a sender holding a valid key cannot get a modified ciphertext decrypted: AES-GCM's tag.
    parts = jwe_token(sealed.to_bytes()).split(".")
    ciphertext = crypto.b64url_decode_strict(parts[3])
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    parts[3] = crypto.b64url(_flip(ciphertext, bit))
    assert _receive(federation, resign(".".join(parts), federation.store(STOCKHOLM))) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)


@pytest.mark.parametrize("field,value", [("label", "Remiss katarakt!"), ("conversation_id", "M-8"),
                                         ("message_id", "00000000-0000-4000-8000-000000000000")])
def test_a_changed_header_fails_decryption_even_when_re_signed(
        federation: Federation, sealed: SealedMessage, field: str, value: str) -> None:
    # The JWE protected header is the AES-GCM associated data: it cannot change under a body.
    raw = resign(with_routing(sealed.to_bytes(), **{field: value}), federation.store(STOCKHOLM))
    assert _receive(federation, raw) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_header_moved_onto_another_body_does_not_decrypt(federation: Federation, sealed: SealedMessage) -> None:
    # Another message's JWE header (with its epk and encrypted key) over this message's body.
    other = federation.notice().to_bytes()
    parts = jwe_token(sealed.to_bytes()).split(".")
    parts[:2] = jwe_token(other).split(".")[:2]
    raw = resign(".".join(parts), federation.store(STOCKHOLM))
    assert _receive(federation, raw) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_message_re_signed_by_another_region_does_not_decrypt(federation: Federation,
                                                                 sealed: SealedMessage) -> None:
    # Someone strips Stockholm's signature and signs as Gotland: valid signature, but the header
    # (sender) changed, so the body no longer decrypts.
    gotland = federation.store(GOTLAND)
    token = with_routing(sealed.to_bytes(), sender_org=GOTLAND, sender_key_id=gotland.signing_key_id)
    assert _receive(federation, resign(token, gotland)) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_message_re_signed_by_another_region_under_the_original_header_is_sig(
        federation: Federation, sealed: SealedMessage) -> None:
    # Gotland's key is not one of Stockholm's, whom the header names.
    assert _receive(federation, resign(jwe_token(sealed.to_bytes()), federation.store(GOTLAND))) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_signature_by_an_unlisted_key_is_sig(federation: Federation, sealed: SealedMessage) -> None:
    header, payload, signature = sealed.to_bytes().split(b".")
    claimed = {**json.loads(crypto.b64url_decode_strict(header.decode())), "kid": "sig-" + "0" * 20}
    raw = b".".join((crypto.b64url(json.dumps(claimed).encode()).encode(), payload, signature))
    assert _receive(federation, raw) == (ReceiptCode.SIG, ReceiptDetail.SECURITY)


def test_a_signature_in_non_canonical_base64url_is_refused(federation: Federation,
                                                           sealed: SealedMessage) -> None:
    # 64 bytes is 86 base64url characters; the last one has 4 unused bits a lenient decoder ignores.
    raw = sealed.to_bytes()
    header, payload, signature = raw.decode().split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]
    assert base64.urlsafe_b64decode(changed + "==") == base64.urlsafe_b64decode(signature + "==")
    assert _receive(federation, f"{header}.{payload}.{changed}".encode()) == (
        ReceiptCode.SIG, ReceiptDetail.SECURITY)
