"""The replay report: per policy, what it achieved, as a ratio to the hindsight optimum and to
first come, first served; a Rich table, a JSON document and charts over time.

Nothing here depends on the wall clock or the machine: the same stream, policies and seed give
the same table and the same JSON, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from marketplace.replay.engine import ReplayResult
from marketplace.replay.metrics import METRICS, Metrics, ratio
from marketplace.replay.stream import Stream

HEADINGS = {"placed": "placed", "wait_days": "wait-days", "match_days_median": "match d (median)",
            "match_days_p90": "match d (p90)", "breaches": "breaches", "capacity_unused": "capacity unused",
            "procedure_sek": "procedure SEK", "ancillary_sek": "ancillary SEK"}


@dataclass(frozen=True)
class PolicyRow:
    label: str
    policy: str
    publish_before_breach: int | None
    metrics: Metrics
    rounds: int
    round_patients: int
    to_hindsight: dict[str, float | None]
    to_fcfs: dict[str, float | None]


@dataclass(frozen=True)
class Report:
    stream: str
    seed: int
    start: str
    end: str
    patients: int
    capacity: int
    hindsight: Metrics
    rows: list[PolicyRow]
    hindsight_knows_answers: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"stream": self.stream, "seed": self.seed, "start": self.start, "end": self.end,
                "patients": self.patients, "capacity": self.capacity, "hindsight": asdict(self.hindsight),
                "hindsight_knows_answers": self.hindsight_knows_answers,
                "policies": [{"label": r.label, "policy": r.policy,
                              "publish_before_breach_days": r.publish_before_breach, "metrics": asdict(r.metrics),
                              "rounds": r.rounds, "patients_read_by_rounds": r.round_patients,
                              "ratio_to_hindsight": r.to_hindsight, "ratio_to_fcfs": r.to_fcfs}
                             for r in self.rows]}

    def row(self, label: str) -> PolicyRow:
        return next(r for r in self.rows if r.label == label)


def label_of(result: ReplayResult) -> str:
    n = result.publish_before_breach
    return result.policy if n is None else f"{result.policy}+pre{n}d"


def build_report(stream: Stream, results: Sequence[tuple[ReplayResult, Metrics]], hindsight: Metrics,
                 hindsight_knows_answers: bool = True) -> Report:
    fcfs = next((m for r, m in results if r.policy == "fcfs" and r.publish_before_breach is None), None)
    rows = []
    for result, m in results:
        to_h = {k: ratio(m.value(k), hindsight.value(k)) for k in METRICS}
        to_f = {k: ratio(m.value(k), fcfs.value(k)) for k in METRICS} if fcfs else {}
        rows.append(PolicyRow(label_of(result), result.policy, result.publish_before_breach, m, result.rounds,
                              result.round_patients, to_h, to_f))
    return Report(stream.name, stream.seed, stream.start.isoformat(), stream.end.isoformat(), stream.patient_count,
                  sum(o.capacity for o in stream.offers), hindsight, rows, hindsight_knows_answers)


def _fmt(name: str, value: float) -> str:
    if name.endswith("_sek"):
        return f"{value:,.0f}".replace(",", " ")
    if name.startswith("match_days"):
        return f"{value:.1f}"
    return f"{value:,.0f}".replace(",", " ")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render(report: Report, console: Console) -> None:
    table = Table(title=f"{report.stream}: {report.patients} patients, {report.capacity} slots, "
                        f"{report.start} .. {report.end}", title_justify="left")
    table.add_column("policy")
    for name in METRICS:
        table.add_column(HEADINGS[name], justify="right")
    table.add_column("rounds", justify="right")
    name = "hindsight optimum" if report.hindsight_knows_answers else "hindsight optimum (answers unknown)"
    table.add_row(name, *(_fmt(k, report.hindsight.value(k)) for k in METRICS), "1")
    table.add_section()
    for r in report.rows:
        table.add_row(r.label, *(_fmt(k, r.metrics.value(k)) for k in METRICS), f"{r.rounds}")
    console.print(table)
    ratios = Table(title="ratio to the hindsight optimum / to first come, first served", title_justify="left")
    ratios.add_column("policy")
    for name in METRICS:
        ratios.add_column(HEADINGS[name], justify="right")
    for r in report.rows:
        ratios.add_row(r.label, *(f"{_ratio(r.to_hindsight[k])} / {_ratio(r.to_fcfs.get(k))}" for k in METRICS))
    console.print(ratios)
    base = {r.policy: r for r in report.rows if r.publish_before_breach is None}
    for r in report.rows:
        if r.publish_before_breach is not None and r.policy in base:
            b, a = base[r.policy].metrics, r.metrics
            console.print(f"{r.policy}: publishing {r.publish_before_breach} days before the breach: breaches "
                          f"{b.breaches} -> {a.breaches}, wait-days {_fmt('wait_days', b.wait_days)} -> "
                          f"{_fmt('wait_days', a.wait_days)}, placed {b.placed} -> {a.placed}")


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                   encoding="utf-8")
    tmp.replace(path)


def write_charts(report: Report, results: Sequence[ReplayResult], path: Path) -> None:
    """Placed patients, patients waiting on the book and guarantee breaches per day, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    for result in results:
        days = [s.day for s in result.series]
        label = label_of(result)
        axes[0].plot(days, [s.placed for s in result.series], label=label)
        axes[1].plot(days, [s.waiting for s in result.series], label=label)
        axes[2].plot(days, [s.breaches for s in result.series], label=label)
    axes[0].axhline(report.hindsight.placed, color="black", linestyle=":", label="hindsight optimum")
    axes[0].set_ylabel("patients placed")
    axes[1].set_ylabel("waiting on the book")
    axes[2].set_ylabel("guarantee breaches (warned)")
    axes[0].set_title(report.stream)
    axes[0].legend(fontsize="small", ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # No creation date or software version in the file: the same report gives the same bytes.
    fig.savefig(path, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
