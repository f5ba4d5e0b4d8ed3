"""The contract on the bus: event models, the envelope, stream names, schema versions.

Imports nothing of ours, so every other package may depend on it.
"""

from events.envelope import Envelope, EventParseError, new_envelope
from events.payloads import (
    PAYLOAD_TYPES,
    AgreementRegistered,
    CaseCommandIssued,
    CaseStateChanged,
    ClearingRoundCompleted,
    ClearingRoundRequested,
    EventRejected,
    MatchProposed,
    MessageEscalated,
    MessageSent,
    OfferPublished,
    OfferWithdrawn,
    Patient,
    PatientNotPlaced,
    Payload,
    ReceiptReceived,
    RequestPublished,
    RequestWithdrawn,
    SecureMessageDelivered,
    SecureMessageSubmitted,
    SecureReceiptDelivered,
    SecureReceiptSubmitted,
)
from events.streams import Streams

__all__ = [
    "PAYLOAD_TYPES",
    "AgreementRegistered",
    "CaseCommandIssued",
    "CaseStateChanged",
    "ClearingRoundCompleted",
    "ClearingRoundRequested",
    "Envelope",
    "EventParseError",
    "EventRejected",
    "MatchProposed",
    "MessageEscalated",
    "MessageSent",
    "OfferPublished",
    "OfferWithdrawn",
    "Patient",
    "PatientNotPlaced",
    "Payload",
    "ReceiptReceived",
    "RequestPublished",
    "RequestWithdrawn",
    "SecureMessageDelivered",
    "SecureMessageSubmitted",
    "SecureReceiptDelivered",
    "SecureReceiptSubmitted",
    "Streams",
    "new_envelope",
]
