"""The secure message: a readable header, a body encrypted for the recipient organisation, and
the sender's signature over both.

Wire form: canonical JSON (sorted keys, no spaces, UTF-8) of

    {"header": {...}, "key_wrap": {...}, "nonce": b64, "ciphertext": b64, "signature": b64}

The signature is Ed25519 over a context string and the canonical JSON of everything but the
signature. The header's canonical JSON is also the AES-GCM associated data: besides the signature,
this stops anyone who re-signs a message under their own name (changing `sender_org`) from
getting the recipient to decrypt it, because the body then no longer decrypts.

A receiver accepts only the canonical form, so the bytes it checks are the bytes that were signed
and one flipped bit can never yield the same message.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from notifiers import crypto
from notifiers.address_book import AddressBook, Base64Bytes, OrganisationEntry
from notifiers.identifiers import HsaId, KeyId, OrgNumber, contains_personal_identity_number
from notifiers.keystore import DecryptionKeys, SigningKeys
from notifiers.message_types import MESSAGE_TYPES, MessageBody
from notifiers.receipts import MessageRejected, ReceiptDetail

FORMAT: Final = "nvf-sdk/1"
MAX_MESSAGE_BYTES = 30_000_000
"""SDK's 30 MB limit on a whole message as sent (decimal megabytes, the stricter reading)."""
MESSAGE_SIGNING_CONTEXT = b"nvf-sdk/1 message\n"


class MessageTooLarge(ValueError):
    """Raised by `compose` rather than sending what the receiver is bound to refuse."""


class MessageHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["nvf-sdk/1"] = FORMAT
    message_id: uuid.UUID
    created_at: AwareDatetime
    conversation_id: str = Field(min_length=1, max_length=128)
    in_reply_to: uuid.UUID | None = None
    sender_org: OrgNumber
    recipient_org: OrgNumber
    recipient_address: HsaId
    message_type: str = Field(pattern=r"^[a-z][a-z0-9._-]{0,63}$")
    label: str = Field(default="", max_length=256)
    confidential: bool
    sender_key_id: KeyId
    recipient_key_id: KeyId

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.utcoffset() != timedelta(0):
            raise ValueError("created_at must be in UTC")
        return value

    @field_validator("label")
    @classmethod
    def _no_identity_in_label(cls, value: str) -> str:
        # The header is readable by every hop; patient identity belongs in the encrypted body only.
        if contains_personal_identity_number(value):
            raise ValueError("the label must not contain a personal identity number")
        return value


class KeyWrap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["X25519-HKDF-SHA256-A256KW"] = crypto.KEY_WRAP_ALGORITHM
    ephemeral_public_key: Annotated[Base64Bytes, Field(min_length=32, max_length=32)]
    wrapped_key: Annotated[Base64Bytes, Field(min_length=40, max_length=40)]


class SealedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    header: MessageHeader
    key_wrap: KeyWrap
    content_algorithm: Literal["A256GCM"] = crypto.CONTENT_ALGORITHM
    nonce: Annotated[Base64Bytes, Field(min_length=crypto.NONCE_BYTES, max_length=crypto.NONCE_BYTES)]
    ciphertext: Base64Bytes
    signature: Annotated[Base64Bytes, Field(min_length=64, max_length=64)]
    _wire: bytes | None = PrivateAttr(default=None)

    def to_bytes(self) -> bytes:
        """The canonical wire form (computed once; a sealed message never changes)."""
        if self._wire is None:
            self._wire = crypto.canonical_json(self.model_dump(mode="json"))
        return self._wire

    @classmethod
    def from_bytes(cls, raw: bytes) -> SealedMessage:
        """Parse without verifying, e.g. to re-send from an outbox. Receivers use `open_message`."""
        return cls.model_validate_json(raw)


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """A message that verified and decrypted: its header and typed body."""

    header: MessageHeader
    body: MessageBody


def compose(
    body: MessageBody,
    *,
    sender: SigningKeys,
    recipient: OrganisationEntry,
    recipient_address: str | None = None,
    conversation_id: str | None = None,
    in_reply_to: uuid.UUID | None = None,
    label: str = "",
    confidential: bool | None = None,
    message_id: uuid.UUID | None = None,
    created_at: datetime | None = None,
) -> SealedMessage:
    """Seal `body` for `recipient` (an address book entry) and sign it with the sender's keys.

    The message type is the body's `TYPE`. `recipient_address` defaults to the recipient's first
    functional address; `conversation_id` to the message id. Pass a stable `message_id` when the
    same logical message may be composed again (the receiver refuses the second as a duplicate).
    """
    if MESSAGE_TYPES.get(body.TYPE) is not type(body):
        raise ValueError(f"{type(body).__name__} is not a registered message type")
    address = recipient_address or recipient.addresses[0]
    if address not in recipient.addresses:
        raise ValueError(f"{address} is not a functional address of {recipient.org_number}")
    if confidential is None:
        confidential = body.CARRIES_PATIENT_IDENTITY
    if body.CARRIES_PATIENT_IDENTITY and not confidential:
        raise ValueError(f"{body.TYPE} carries patient identity and must be confidential")
    if body.ANSWERS and in_reply_to is None:
        raise ValueError(f"{body.TYPE} answers a {body.ANSWERS}: in_reply_to is required")
    encryption_key = recipient.current_key("encryption")
    mid = message_id or uuid.uuid4()
    header = MessageHeader(
        message_id=mid,
        created_at=created_at or datetime.now(UTC),
        conversation_id=conversation_id or str(mid),
        in_reply_to=in_reply_to,
        sender_org=sender.organisation,
        recipient_org=recipient.org_number,
        recipient_address=address,
        message_type=body.TYPE,
        label=label,
        confidential=confidential,
        sender_key_id=sender.signing_key_id,
        recipient_key_id=encryption_key.key_id,
    )
    header_json = header.model_dump(mode="json")
    content_key = crypto.new_content_key()
    nonce, ciphertext = crypto.encrypt(content_key, crypto.canonical_json(body.model_dump(mode="json")),
                                       crypto.canonical_json(header_json))
    wrapped = crypto.wrap_content_key(encryption_key.public_key, content_key)
    key_wrap = KeyWrap(ephemeral_public_key=wrapped.ephemeral_public_key, wrapped_key=wrapped.wrapped_key)
    unsigned: dict[str, Any] = {
        "header": header_json,
        "key_wrap": key_wrap.model_dump(mode="json"),
        "content_algorithm": crypto.CONTENT_ALGORITHM,
        "nonce": crypto.b64encode(nonce),
        "ciphertext": crypto.b64encode(ciphertext),
    }
    signature = sender.sign(MESSAGE_SIGNING_CONTEXT + crypto.canonical_json(unsigned))
    sealed = SealedMessage(header=header, key_wrap=key_wrap, nonce=nonce, ciphertext=ciphertext,
                           signature=signature)
    size = len(sealed.to_bytes())
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"the sealed message is {size} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return sealed


def open_message(raw: bytes, recipient: DecryptionKeys, address_book: AddressBook) -> OpenedMessage:
    """Check, verify and decrypt a message for `recipient`; raise MessageRejected saying why not.

    The order matters: size before parsing (never parse 30 MB of garbage), the signature before
    anything the header says is believed (so a tampered header is SIG, never not-found or
    not-supported), business rules before decryption.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageRejected(ReceiptDetail.TOO_LONG,
                              f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    data = _parse_canonical(raw)
    header_raw = data.get("header")
    if not isinstance(header_raw, dict):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "header: missing or not an object")
    message_id = _claimed_uuid(header_raw.get("message_id"))
    sender_org, sender_key_id = header_raw.get("sender_org"), header_raw.get("sender_key_id")
    signature_text = data.get("signature")

    def reject(detail: ReceiptDetail, reason: str) -> MessageRejected:
        claimed_sender = sender_org if isinstance(sender_org, str) and address_book.get(sender_org) else None
        return MessageRejected(detail, reason, message_id=message_id, sender_org=claimed_sender)

    if not (isinstance(sender_org, str) and isinstance(sender_key_id, str)):
        raise reject(ReceiptDetail.STRUCTURE, "header.sender_org and header.sender_key_id must be strings")
    if not isinstance(signature_text, str):
        raise reject(ReceiptDetail.STRUCTURE, "signature must be a string")

    # --- the signature, over the bytes as received ---
    signing_key = address_book.signing_key(sender_org, sender_key_id)
    if signing_key is None:
        raise reject(ReceiptDetail.SECURITY, f"no signing key {sender_key_id} for {sender_org}")
    try:
        signature = crypto.b64decode_strict(signature_text)
    except ValueError as exc:
        raise reject(ReceiptDetail.SECURITY, f"signature: {exc}") from None
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    if not crypto.verify(signing_key.public_key, signature,
                         MESSAGE_SIGNING_CONTEXT + crypto.canonical_json(unsigned)):
        raise reject(ReceiptDetail.SECURITY, "the signature does not verify")

    # --- syntax of what the sender signed ---
    try:
        sealed = SealedMessage.model_validate(data)
    except ValidationError as exc:
        raise reject(ReceiptDetail.STRUCTURE, _first_error(exc)) from None
    header = sealed.header
    if not signing_key.valid_for_signature_at(header.created_at):
        raise reject(ReceiptDetail.SECURITY,
                     f"signed with {sender_key_id}, which was retired before {header.created_at}")

    # --- business rules on the readable header ---
    own = address_book.get(header.recipient_org)
    if header.recipient_org != recipient.organisation or own is None:
        raise reject(ReceiptDetail.NOT_FOUND, f"recipient organisation {header.recipient_org} is not here")
    if header.recipient_address not in own.addresses:
        raise reject(ReceiptDetail.NOT_FOUND, f"no functional address {header.recipient_address}")
    body_type = MESSAGE_TYPES.get(header.message_type)
    if body_type is None:
        raise reject(ReceiptDetail.NOT_SUPPORTED, f"message type {header.message_type!r}")
    if body_type.CARRIES_PATIENT_IDENTITY and not header.confidential:
        raise reject(ReceiptDetail.INVARIANT, f"{header.message_type} must be marked confidential")
    if body_type.ANSWERS and header.in_reply_to is None:
        raise reject(ReceiptDetail.INVARIANT, f"{header.message_type} must name the message it answers")

    # --- decryption ---
    try:
        content_key = recipient.unwrap_content_key(
            header.recipient_key_id,
            crypto.WrappedKey(sealed.key_wrap.ephemeral_public_key, sealed.key_wrap.wrapped_key))
        plaintext = crypto.decrypt(content_key, sealed.nonce, sealed.ciphertext,
                                   crypto.canonical_json(header_raw))
    except crypto.CryptoError as exc:
        raise reject(ReceiptDetail.SECURITY, str(exc)) from None
    try:
        body = body_type.model_validate_json(plaintext)
    except ValidationError as exc:
        raise reject(ReceiptDetail.STRUCTURE, "body." + _first_error(exc)) from None
    return OpenedMessage(header=header, body=body)


def _parse_canonical(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MessageRejected(ReceiptDetail.STRUCTURE, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "a message is a JSON object")
    try:
        canonical = crypto.canonical_json(data)
    except (ValueError, RecursionError) as exc:
        raise MessageRejected(ReceiptDetail.STRUCTURE, f"not representable canonically: {exc}") from None
    if canonical != raw:
        header = data.get("header")
        claimed = _claimed_uuid(header.get("message_id")) if isinstance(header, dict) else None
        raise MessageRejected(ReceiptDetail.STRUCTURE, "not in canonical JSON form", message_id=claimed)
    return data


def _claimed_uuid(value: object) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
