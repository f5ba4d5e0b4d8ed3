"""The policy sandbox: replay one stream under several policies (and with pre-breach publication),
clear it in hindsight, and report. Pure: no I/O beyond what the caller does with the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from marketplace.lifecycle import DEFAULT_POLICY, LifecyclePolicy
from marketplace.replay.engine import Replay, ReplayResult
from marketplace.replay.metrics import Metrics, hindsight_knows_answers, hindsight_metrics, replay_metrics
from marketplace.replay.policies import POLICIES
from marketplace.replay.report import Report, build_report
from marketplace.replay.stream import Stream, StreamError, load_stream, parse_stream
from matchers.objective import CONTRACT, Objective

SAMPLES = ("cataract", "inguinal-hernia", "knee-replacement")
StartFn = Callable[[str, int], Callable[[int, int], None] | None]


@dataclass
class SandboxRun:
    report: Report
    results: list[ReplayResult]


def load_sample(care_area: str) -> Stream:
    """One of the shipped sample streams (package data), by care area."""
    import json

    if care_area not in SAMPLES:
        raise StreamError([f"sample: no sample for {care_area!r}; samples: {', '.join(SAMPLES)} [sample]"])
    text = resources.files("marketplace.replay").joinpath("samples", f"{care_area}.json").read_text(encoding="utf-8")
    return parse_stream(json.loads(text), f"sample {care_area}")


def open_stream(name: str) -> Stream:
    """A stream file, or a shipped sample by its care area (when no such file exists)."""
    path = Path(name)
    if not path.exists() and name in SAMPLES:
        return load_sample(name)
    return load_stream(path)


def run_sandbox(stream: Stream, policies: Sequence[str], *, publish_before_breach: int | None = None,
                breach_weight: int = 0, lifecycle: LifecyclePolicy = DEFAULT_POLICY,
                on_start: StartFn | None = None) -> SandboxRun:
    """Each policy as published; with `publish_before_breach`, each again with pre-breach
    publication (and the objective's breach weight, when given)."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    plan: list[tuple[str, int | None, Objective]] = [(p, None, CONTRACT) for p in policies]
    if publish_before_breach is not None:
        weighted = Objective(breach_weight=breach_weight, breach_horizon_days=max(1, publish_before_breach))
        plan += [(p, publish_before_breach, weighted) for p in policies if p != "recorded"]
    results: list[tuple[ReplayResult, Metrics]] = []
    for name, pre, objective in plan:
        label = name if pre is None else f"{name}+pre{pre}d"
        progress = on_start(label, len(stream.events)) if on_start else None
        result = Replay(stream, POLICIES[name], publish_before_breach=pre, objective=objective,
                        lifecycle=lifecycle).run(progress)
        results.append((result, replay_metrics(result)))
    knows = hindsight_knows_answers(stream)
    hindsight = hindsight_metrics(stream, lifecycle, knows_answers=knows)
    return SandboxRun(build_report(stream, results, hindsight, knows), [r for r, _ in results])
