"""The parties' answers in a replay: recorded ones where the log has them, else drawn from the
stream's stated rates. Each draw is a pure function of (seed, party, case, offer), so every
policy that proposes the same slot to the same patient gets the same answer after the same delay."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from marketplace.replay.stream import Answer, Party, Stream


@dataclass(frozen=True)
class Reply:
    answer: Answer
    delay_hours: float
    recorded: bool = False


def reply(stream: Stream, party: Party, case_ref: str, offer_id: str) -> Reply:
    recorded = stream.answers.get((case_ref, offer_id, party))
    if recorded is not None:
        return Reply(recorded.answer, 0.0, recorded=True)
    b = stream.behaviour
    u, v = _uniforms(stream.seed, party, case_ref, offer_id)
    if party == "provider":
        lo, hi = b.provider_answer_hours
        answer: Answer = "decline" if u < b.provider_decline_rate else "accept"
    else:
        lo, hi = b.patient_answer_hours
        if u < b.no_show_rate:
            answer = "none"
        elif u < b.no_show_rate + b.patient_decline_rate:
            answer = "decline"
        else:
            answer = "accept"
    return Reply(answer, round(lo + v * (hi - lo), 3))


def refuses(stream: Stream, case_ref: str, offer_id: str) -> bool:
    """Whether a proposal of `offer_id` to `case_ref` would fail: the provider declines, or the
    patient declines or never answers (what the hindsight optimum knows in advance)."""
    return (reply(stream, "provider", case_ref, offer_id).answer != "accept"
            or reply(stream, "patient", case_ref, offer_id).answer != "accept")


def _uniforms(seed: int, party: str, case_ref: str, offer_id: str) -> tuple[float, float]:
    # A keyed hash, not a shared random generator: the answer to one proposal never depends on
    # which proposals came before it, so every policy meets the same parties.
    digest = hashlib.blake2b(f"{seed}|{party}|{case_ref}|{offer_id}".encode(), digest_size=16).digest()
    return (int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:], "big") / 2**64)
