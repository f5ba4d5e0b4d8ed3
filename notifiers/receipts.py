"""Business receipts: every message is answered ACCEPTED, or REJECTED with a code and a detail.

Codes: SV (syntax), BV (business rule), SIG (signature and other security). Each detail belongs to
one code (`DETAIL_CODES`). A receipt is signed by the organisation that issues it, so the sender
can tell a real rejection from a forged one. It is not encrypted: it carries ids and codes only,
and must be sendable even for a message whose sender could not be established. Receipts are never
answered with receipts.

Wire form (profile "nvf-jose/1", as for messages, see `notifiers.envelope`): a JWS in compact
serialization, protected header {"alg": "Ed25519", "kid": <the issuer's signing key id>,
"typ": "nvf-receipt+jws", "cty": "json"}, payload the `Receipt` as RFC 8785 canonical JSON. The
typ keeps a receipt's signature from ever passing for a message's, and back.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from joserfc import jws
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from events.payloads import ReceiptReceived
from notifiers import crypto
from notifiers.address_book import AddressBook
from notifiers.identifiers import OrgNumber
from notifiers.keystore import SigningKeys

RECEIPT_TYPE: Final = "nvf-receipt+jws"
RECEIPT_CONTENT_TYPE: Final = "json"
MAX_RECEIPT_BYTES = 64 * 1024
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class ReceiptStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"


class ReceiptCode(StrEnum):
    SV = "SV"
    BV = "BV"
    SIG = "SIG"


class ReceiptDetail(StrEnum):
    STRUCTURE = "structure"
    TOO_LONG = "too-long"
    INVARIANT = "invariant"
    NOT_FOUND = "not-found"
    NOT_SUPPORTED = "not-supported"
    FORBIDDEN = "forbidden"
    DUPLICATE = "duplicate"
    SECURITY = "security"


DETAIL_CODES: dict[ReceiptDetail, ReceiptCode] = {
    ReceiptDetail.STRUCTURE: ReceiptCode.SV,
    # Refused before the message is even parsed, so it counts as syntax.
    ReceiptDetail.TOO_LONG: ReceiptCode.SV,
    ReceiptDetail.INVARIANT: ReceiptCode.BV,
    ReceiptDetail.NOT_FOUND: ReceiptCode.BV,
    ReceiptDetail.NOT_SUPPORTED: ReceiptCode.BV,
    ReceiptDetail.FORBIDDEN: ReceiptCode.BV,
    ReceiptDetail.DUPLICATE: ReceiptCode.BV,
    ReceiptDetail.SECURITY: ReceiptCode.SIG,
}


class MessageRejected(Exception):
    """Why a message is refused; becomes a REJECTED receipt."""

    def __init__(self, detail: ReceiptDetail, reason: str, *, message_id: uuid.UUID | None = None,
                 sender_org: str | None = None) -> None:
        super().__init__(f"{DETAIL_CODES[detail]} {detail}: {reason}")
        self.detail = detail
        self.code = DETAIL_CODES[detail]
        self.reason = reason
        # What the message claims, for addressing the receipt; not verified when the rejection
        # is about the signature itself.
        self.message_id = message_id
        self.sender_org = sender_org


class Receipt(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receipt_id: uuid.UUID
    created_at: AwareDatetime
    message_id: uuid.UUID | None = Field(description="the message answered; None if it had no readable id")
    issuer_org: OrgNumber
    recipient_org: OrgNumber | None = Field(description="the sender of the answered message, if known")
    status: ReceiptStatus
    code: ReceiptCode | None = None
    detail: ReceiptDetail | None = None
    reason: str = Field(default="", max_length=1_000)

    @model_validator(mode="after")
    def _status_consistent(self) -> Receipt:
        if self.status is ReceiptStatus.ACCEPTED:
            if self.code is not None or self.detail is not None:
                raise ValueError("an ACCEPTED receipt has no code or detail")
        elif self.code is None or self.detail is None:
            raise ValueError("a REJECTED receipt needs a code and a detail")
        elif DETAIL_CODES[self.detail] is not self.code:
            raise ValueError(f"detail {self.detail} goes with code {DETAIL_CODES[self.detail]}")
        return self


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    """A receipt and its wire form, a compact JWS signed by the issuer."""

    receipt: Receipt
    token: str

    def to_bytes(self) -> bytes:
        return self.token.encode("ascii")


class ReceiptInvalid(Exception):
    """A receipt that does not parse or whose signature does not verify."""


def new_receipt(issuer_org: str, *, message_id: uuid.UUID | None, recipient_org: str | None,
                rejection: MessageRejected | None = None, now: datetime | None = None) -> Receipt:
    return Receipt(
        receipt_id=uuid.uuid4(),
        created_at=now or datetime.now(UTC),
        message_id=message_id,
        issuer_org=issuer_org,
        recipient_org=recipient_org,
        status=ReceiptStatus.REJECTED if rejection else ReceiptStatus.ACCEPTED,
        code=rejection.code if rejection else None,
        detail=rejection.detail if rejection else None,
        reason=rejection.reason[:1_000] if rejection else "",
    )


def sign_receipt(receipt: Receipt, signer: SigningKeys) -> SignedReceipt:
    if receipt.issuer_org != signer.organisation:
        raise ValueError("a receipt is signed by its issuer")
    payload = crypto.canonical_json(receipt.model_dump(mode="json"))
    token = signer.sign_compact({"typ": RECEIPT_TYPE, "cty": RECEIPT_CONTENT_TYPE}, payload)
    return SignedReceipt(receipt=receipt, token=token)


def verify_receipt(raw: bytes, address_book: AddressBook) -> Receipt:
    """Parse a receipt and check its issuer's signature; raise ReceiptInvalid otherwise.

    The receipt is read from the payload exactly as signed, never as re-serialised by our model.
    """
    if len(raw) > MAX_RECEIPT_BYTES:
        raise ReceiptInvalid("receipt too large")
    if not _COMPACT_JWS.fullmatch(raw):
        raise ReceiptInvalid("not a receipt: not a JWS in compact serialization")
    header_part, payload_part, signature_part = raw.decode("ascii").split(".")
    try:
        header = json.loads(crypto.b64url_decode_strict(header_part))
        receipt = Receipt.model_validate_json(crypto.b64url_decode_strict(payload_part))
        crypto.b64url_decode_strict(signature_part)
    except (ValueError, ValidationError, RecursionError) as exc:
        raise ReceiptInvalid(f"not a receipt: {exc}") from exc
    if not isinstance(header, dict) or header.get("typ") != RECEIPT_TYPE or header.get("cty") != RECEIPT_CONTENT_TYPE:
        raise ReceiptInvalid(f"not a receipt: typ must be {RECEIPT_TYPE!r}, cty {RECEIPT_CONTENT_TYPE!r}")
    key_id = header.get("kid")
    key = address_book.signing_key(receipt.issuer_org, key_id) if isinstance(key_id, str) else None
    if key is None or not key.valid_for_signature_at(receipt.created_at):
        raise ReceiptInvalid(f"no valid signing key {key_id} for {receipt.issuer_org}")
    try:
        jws.deserialize_compact(raw, key.okp_key(), registry=crypto.JWS_REGISTRY)
    except crypto.JoseFailure:
        raise ReceiptInvalid("receipt signature does not verify") from None
    return receipt


def receipt_received_payload(receipt: Receipt, case_ref: str) -> ReceiptReceived:
    """The bus event telling the timeline a receipt came back (for a message of `case_ref`)."""
    if receipt.message_id is None:
        raise ValueError("a receipt without a message id cannot be tied to a case")
    return ReceiptReceived(
        message_id=str(receipt.message_id),
        case_ref=case_ref,
        status=receipt.status.value,
        code=receipt.code.value if receipt.code else None,
        detail=receipt.detail.value if receipt.detail else None,
    )
