"""`nvf match SCENARIO.json --out ALLOCATION.jsonl`: one clearing round offline, no bus."""

from __future__ import annotations

import os
import tempfile
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from marketplace.errors import check_output_file
from matchers.allocation import Allocation
from matchers.clearing import clear
from matchers.explanation import RequestExplanation, explain
from matchers.feasibility import format_number
from matchers.scenario import ScenarioError, load_scenario

EXIT_INVALID_SCENARIO = 2


class PolicyChoice(StrEnum):
    optimal = "optimal"
    greedy = "greedy"


def _write_atomically(allocation: Allocation, out: Path) -> None:
    # A reader must never see half a file, and a failed round must leave no file at all.
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        allocation.to_jsonl(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(allocation: Allocation, seconds: float, scenario_name: str) -> Table:
    table = Table(title=f"clearing round ({allocation.policy})", show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("scenario", scenario_name)
    table.add_row(
        "placed / patients", f"{format_number(allocation.placed)} / {format_number(allocation.patients)}"
    )
    table.add_row("wait days (placed)", format_number(allocation.wait_days))
    table.add_row("procedure cost SEK", format_number(allocation.procedure_cost_sek))
    table.add_row("ancillary cost SEK", format_number(allocation.ancillary_cost_sek))
    table.add_row("total cost SEK", format_number(allocation.total_cost_sek))
    table.add_row("time taken", f"{seconds:.3f} s")
    return table


def _explanation_table(found: RequestExplanation) -> Table:
    reasons = sorted({p.reason or "" for p in found.unplaced})
    table = Table(
        title=(
            f"{found.request_id} (region {found.region}, {found.care_area}): "
            f"{len(found.unplaced)} not placed, {', '.join(reasons)}"
        )
    )
    table.add_column("offer")
    table.add_column("region")
    table.add_column("rule")
    table.add_column("why")
    for verdict in found.offers:
        why = verdict.text
        if verdict.declined_by:
            why += f" (declined by {verdict.declined_by})"
        table.add_row(verdict.offer_id, verdict.region, verdict.rule, why)
    if not found.offers:
        table.add_row("-", "-", "-", f"no offer in care area {found.care_area}")
    return table


def match(
    scenario: Annotated[Path, typer.Argument(help="scenario file (contract/SCENARIOS.md)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="allocation to write (JSON Lines)")],
    policy: Annotated[PolicyChoice, typer.Option(help="optimal clearing or first come, first served")] = (
        PolicyChoice.optimal
    ),
    explain_unplaced: Annotated[
        bool, typer.Option("--explain", help="per unplaced request, each offer and the rule excluding it")
    ] = False,
) -> None:
    """Run one clearing round offline and write the allocation, one line per patient."""
    console = Console()
    started = time.perf_counter()
    check_output_file(out, "--out")
    try:
        book = load_scenario(scenario)
    except ScenarioError as exc:
        # Plain text, unwrapped: the message names item, field and rule and must stay greppable.
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_INVALID_SCENARIO) from exc
    allocation = clear(book, policy.value)
    _write_atomically(allocation, out)
    seconds = time.perf_counter() - started
    console.print(_summary(allocation, seconds, book.name or scenario.name))
    console.print(f"wrote {out}")
    if explain_unplaced:
        for found in explain(book, allocation):
            console.print(_explanation_table(found))


def register(app: typer.Typer) -> None:
    """Add `match` to the `nvf` app."""
    app.command("match")(match)
