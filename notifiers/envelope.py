"""The secure message: a readable routing header, a body encrypted for the recipient
organisation, and the sender organisation's signature over both, as standard JOSE.

A region's own system can produce and open these with any JOSE library that has Ed25519 and
X25519 (RFC 8037); this docstring is the whole profile.

Profile "nvf-jose/1"
--------------------

A message is a JWS (RFC 7515) in compact serialization whose payload is a JWE (RFC 7516) in
compact serialization (ASCII)::

    message = BASE64URL(JWS header) "." BASE64URL(JWE compact) "." BASE64URL(signature)

JWS protected header (nothing unprotected exists in the compact form):

    alg   "Ed25519" (RFC 9864; "EdDSA" with the same Ed25519 key is accepted too)
    kid   the sender organisation's current signing key id
    typ   "nvf-message+jws"
    cty   "nvf-body+jwe"

JWE protected header:

    alg   "ECDH-ES+A256KW" (RFC 7518 §4.6; the key agreement over X25519, RFC 8037)
    enc   "A256GCM"
    kid   the recipient organisation's current encryption key id
    epk   the ephemeral X25519 public key, an OKP JWK (the JOSE library adds it)
    typ   "nvf-body+jwe"
    cty   "json"
    nvf   the routing header, an object with these members and no others:
          format "nvf-jose/1"; message_id (UUID); created_at (ISO 8601, UTC); conversation_id;
          in_reply_to (UUID or null); sender_org, recipient_org (org numbers NNNNNN-NNNN);
          recipient_address (HSA-id); message_type; label (no personal identity number);
          confidential (bool); sender_key_id (= the JWS kid); recipient_key_id (= the JWE kid).
          in_reply_to and label may be left out (null and "").

JWE plaintext: the body of `message_type` (see `notifiers.message_types`) as RFC 8785
canonical JSON in UTF-8. No compression ("zip" is not allowed). The whole message is at most
30,000,000 bytes. Only the compact serialization is accepted.

Receipts answer every message; they are JWSs too (see `notifiers.receipts`).

Keys are published as RFC 8037 OKP JWKs, one JWK Set per organisation in `jwks/<org number>.json`
beside the address book (`AddressBook.jwks`; retired keys stay listed, so older messages still
verify, a signing key only for what was created before it was retired): signing keys
{"kty":"OKP","crv":"Ed25519","use":"sig","alg":"Ed25519"}, encryption keys
{"kty":"OKP","crv":"X25519","use":"enc","alg":"ECDH-ES+A256KW"}, each with its "kid":
"sig-"/"enc-" and the first 20 hex digits of SHA-256 of the raw 32-byte public key.

Why it is built so:

- The routing header is in the JWE protected header, which is the AES-GCM additional
  authenticated data: a header cannot be moved onto another body, and whoever re-signs a message
  under their own name (changing `sender_org`/`sender_key_id`) gets a body that no longer
  decrypts. Anyone can read it without a key (base64url of the JWS payload, then of the JWE's
  first part), which is what the marketplace routes by; it never decrypts.
- A receiver looks up the signing key by the header's `sender_org` and the JWS kid, verifies the
  signature over the bytes as received, and only then believes anything the header says. The
  compact form has one encoding of the signed bytes; the signature part must be canonical
  base64url too, so one flipped bit anywhere can never yield an accepted message.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from joserfc import jwe, jws
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from notifiers import crypto
from notifiers.address_book import AddressBook, OrganisationEntry, PublicKey
from notifiers.identifiers import HsaId, KeyId, OrgNumber, contains_personal_identity_number
from notifiers.keystore import DecryptionKeys, SigningKeys
from notifiers.message_types import MESSAGE_TYPES, MessageBody
from notifiers.receipts import MessageRejected, ReceiptDetail

FORMAT: Final = "nvf-jose/1"
MAX_MESSAGE_BYTES = 30_000_000
"""SDK's 30 MB limit on a whole message as sent (decimal megabytes, the stricter reading)."""
JWS_TYPE: Final = "nvf-message+jws"
JWE_TYPE: Final = "nvf-body+jwe"
JWE_CONTENT_TYPE: Final = "json"

_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_COMPACT_JWE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class MessageTooLarge(ValueError):
    """Raised by `compose` rather than sending what the receiver is bound to refuse."""


class MessageHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["nvf-jose/1"] = FORMAT
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


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message as sent: its wire form (a compact JWS) and the routing header it carries."""

    header: MessageHeader
    token: str

    def to_bytes(self) -> bytes:
        return self.token.encode("ascii")

    @classmethod
    def from_bytes(cls, raw: bytes) -> SealedMessage:
        """Parse without verifying, e.g. to re-send from an outbox. Receivers use `open_message`."""
        try:
            parts = _split(raw)
            return cls(header=MessageHeader.model_validate(parts.routing), token=raw.decode("ascii"))
        except MessageRejected as exc:
            raise ValueError(exc.reason) from None
        except ValidationError as exc:
            raise ValueError(_first_error(exc)) from None


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
    jwe_header = {"alg": crypto.KEY_MANAGEMENT_ALGORITHM, "enc": crypto.CONTENT_ALGORITHM,
                  "kid": encryption_key.key_id, "typ": JWE_TYPE, "cty": JWE_CONTENT_TYPE,
                  crypto.HEADER_PARAMETER: header.model_dump(mode="json")}
    sealed_body = jwe.encrypt_compact(jwe_header, crypto.canonical_json(body.model_dump(mode="json")),
                                      encryption_key.okp_key(), registry=crypto.JWE_REGISTRY)
    token = sender.sign_compact({"typ": JWS_TYPE, "cty": JWE_TYPE}, sealed_body.encode("ascii"))
    if len(token) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"the sealed message is {len(token)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return SealedMessage(header=header, token=token)


def verify_message(raw: bytes, address_book: AddressBook) -> SealedMessage:
    """Check a message's form and its sender's signature, without decrypting anything.

    What the marketplace does before routing, and the first half of `open_message`. The order
    matters: size before parsing (never parse 30 MB of garbage), the signature before anything
    the header says is believed (so a tampered header is SIG, never not-found or not-supported).
    """
    return _verified(raw, address_book)[0]


def _verified(raw: bytes, address_book: AddressBook) -> tuple[SealedMessage, _Parts]:
    """`verify_message`, also handing back the parts it split, so opening does not split again."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MessageRejected(ReceiptDetail.TOO_LONG,
                              f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    parts = _split(raw)
    routing = parts.routing
    message_id = _claimed_uuid(routing.get("message_id"))
    sender_org, sender_key_id = routing.get("sender_org"), parts.jws_header.get("kid")

    def reject(detail: ReceiptDetail, reason: str) -> MessageRejected:
        claimed_sender = sender_org if isinstance(sender_org, str) and address_book.get(sender_org) else None
        return MessageRejected(detail, reason, message_id=message_id, sender_org=claimed_sender)

    if not (isinstance(sender_org, str) and isinstance(sender_key_id, str)):
        raise reject(ReceiptDetail.STRUCTURE, "the JWS kid and nvf.sender_org must be strings")

    # --- the signature, over the bytes as received ---
    signing_key = address_book.signing_key(sender_org, sender_key_id)
    if signing_key is None:
        raise reject(ReceiptDetail.SECURITY, f"no signing key {sender_key_id} for {sender_org}")
    try:
        crypto.b64url_decode_strict(parts.signature)
    except ValueError as exc:
        raise reject(ReceiptDetail.SECURITY, f"signature: {exc}") from None
    if not _signature_verifies(raw, signing_key):
        raise reject(ReceiptDetail.SECURITY, "the signature does not verify")

    # --- syntax of what the sender signed ---
    try:
        header = MessageHeader.model_validate(routing)
    except ValidationError as exc:
        raise reject(ReceiptDetail.STRUCTURE, "nvf." + _first_error(exc)) from None
    expected = {"JWS typ": (parts.jws_header.get("typ"), JWS_TYPE),
                "JWS cty": (parts.jws_header.get("cty"), JWE_TYPE),
                "JWE alg": (parts.jwe_header.get("alg"), crypto.KEY_MANAGEMENT_ALGORITHM),
                "JWE enc": (parts.jwe_header.get("enc"), crypto.CONTENT_ALGORITHM),
                "JWE typ": (parts.jwe_header.get("typ"), JWE_TYPE),
                "JWE cty": (parts.jwe_header.get("cty"), JWE_CONTENT_TYPE),
                "JWE kid": (parts.jwe_header.get("kid"), header.recipient_key_id),
                "JWS kid": (sender_key_id, header.sender_key_id)}
    for name, (value, wanted) in expected.items():
        if value != wanted:
            raise reject(ReceiptDetail.STRUCTURE, f"{name} must be {wanted!r}")
    if "zip" in parts.jwe_header:
        raise reject(ReceiptDetail.STRUCTURE, "JWE zip is not allowed")
    epk = parts.jwe_header.get("epk")
    if not (isinstance(epk, dict) and epk.get("kty") == "OKP" and epk.get("crv") == crypto.CURVES["encryption"]
            and isinstance(epk.get("x"), str)):
        raise reject(ReceiptDetail.STRUCTURE, "JWE epk must be an OKP X25519 public key")
    if not signing_key.valid_for_signature_at(header.created_at):
        raise reject(ReceiptDetail.SECURITY,
                     f"signed with {sender_key_id}, which was retired before {header.created_at}")
    return SealedMessage(header=header, token=raw.decode("ascii")), parts


def open_message(raw: bytes, recipient: DecryptionKeys, address_book: AddressBook) -> OpenedMessage:
    """Check, verify and decrypt a message for `recipient`; raise MessageRejected saying why not.

    `verify_message` first, then business rules on the (now believed) header, then decryption.
    """
    sealed, parts = _verified(raw, address_book)
    header = sealed.header

    def reject(detail: ReceiptDetail, reason: str) -> MessageRejected:
        return MessageRejected(detail, reason, message_id=header.message_id, sender_org=header.sender_org)

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
        plaintext = recipient.decrypt_compact(header.recipient_key_id, parts.jwe_token)
    except crypto.CryptoError as exc:
        raise reject(ReceiptDetail.SECURITY, str(exc)) from None
    try:
        body = body_type.model_validate_json(plaintext)
    except ValidationError as exc:
        raise reject(ReceiptDetail.STRUCTURE, "body." + _first_error(exc)) from None
    return OpenedMessage(header=header, body=body)


@dataclass(frozen=True, slots=True)
class _Parts:
    jws_header: dict[str, Any]
    jwe_token: str
    jwe_header: dict[str, Any]
    routing: dict[str, Any]
    signature: str


def _split(raw: bytes) -> _Parts:
    """The parts of a message as claimed, not yet verified; STRUCTURE if it is no such thing."""
    if not _COMPACT_JWS.fullmatch(raw):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "not a JWS in compact serialization")
    header_part, payload_part, signature = raw.decode("ascii").split(".")
    jws_header = _json_object(header_part, "JWS header")
    try:
        jwe_token = crypto.b64url_decode_strict(payload_part).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "the JWS payload is not base64url of ASCII") from None
    if not _COMPACT_JWE.fullmatch(jwe_token):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "the JWS payload is not a JWE in compact serialization")
    jwe_header = _json_object(jwe_token.split(".", 1)[0], "JWE header")
    routing = jwe_header.get(crypto.HEADER_PARAMETER)
    if not isinstance(routing, dict):
        raise MessageRejected(ReceiptDetail.STRUCTURE, "JWE header nvf: missing or not an object")
    return _Parts(jws_header, jwe_token, jwe_header, routing, signature)


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(crypto.b64url_decode_strict(part))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MessageRejected(ReceiptDetail.STRUCTURE, f"{what}: not base64url of JSON") from None
    if not isinstance(value, dict):
        raise MessageRejected(ReceiptDetail.STRUCTURE, f"{what}: not a JSON object")
    return value


def _signature_verifies(raw: bytes, key: PublicKey) -> bool:
    try:
        jws.deserialize_compact(raw, key.okp_key(), registry=crypto.JWS_REGISTRY)
    except crypto.JoseFailure:
        return False
    return True


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
