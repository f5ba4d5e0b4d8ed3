"""The parties' answers in a replay: recorded ones where the log has them, else drawn from the
stream's stated rates. Each draw is a pure function of (seed, party, case, offer), so every
policy that proposes the same slot to the same patient gets the same answer after the same delay."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

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


_MASK = (1 << 64) - 1


@lru_cache(maxsize=1 << 18)
def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _mix(z: int) -> int:
    """The splitmix64 finaliser: a cheap, well-spread 64-bit mix."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def refusal_test(stream: Stream) -> Callable[[str, str], bool]:
    """`refuses` for one stream, as fast as the hindsight optimum needs it (same answers)."""
    b, answers = stream.behaviour, stream.answers
    provider_seed, patient_seed = _mix(2 * stream.seed), _mix(2 * stream.seed + 1)
    provider_refuses, patient_refuses = b.provider_decline_rate, b.no_show_rate + b.patient_decline_rate

    def refused(case_ref: str, offer_id: str) -> bool:
        if answers and ((case_ref, offer_id, "provider") in answers or (case_ref, offer_id, "patient") in answers):
            return refuses(stream, case_ref, offer_id)
        kc, ko = _key(case_ref), _key(offer_id)
        return (_mix(kc ^ _mix(ko ^ provider_seed)) / 2**64 < provider_refuses
                or _mix(kc ^ _mix(ko ^ patient_seed)) / 2**64 < patient_refuses)

    return refused


def _uniforms(seed: int, party: str, case_ref: str, offer_id: str) -> tuple[float, float]:
    # A keyed hash, not a shared random generator: the answer to one proposal never depends on
    # which proposals came before it, so every policy meets the same parties. Cheap enough for
    # the hindsight optimum to ask it of every feasible pair of a 50 000-patient stream.
    z = _mix(_key(case_ref) ^ _mix(_key(offer_id) ^ _mix(2 * seed + (party == "patient"))))
    return z / 2**64, _mix(z) / 2**64
