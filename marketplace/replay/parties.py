"""The parties' answers in a replay: recorded ones where the log has them, else drawn from the
stream's stated rates. Each draw is a pure function of (seed, party, case, offer), so every
policy that proposes the same slot to the same patient gets the same answer after the same delay."""

from __future__ import annotations

import random
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
    # A string seed is hashed with SHA-512 by `random`: the same on every machine and run.
    rng = random.Random(f"{stream.seed}|{party}|{case_ref}|{offer_id}")
    u = rng.random()
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
    return Reply(answer, round(lo + rng.random() * (hi - lo), 3))
