"""`hexplan solve`: run the scheduler on a cluster file and write plan.yaml."""

from __future__ import annotations

import dataclasses
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

import planner
from planner.cli.app import (
    CalibrationOption,
    ClusterArgument,
    ProfilesOption,
    app,
    console,
    console_err,
    load,
    parse_duration_option,
)
from planner.cli.render import replicas_table, routes_table, summary_table
from planner.errors import InputError
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan, plan_to_yaml, read_plan, write_plan


class Objective(StrEnum):
    throughput = "throughput"
    cost = "cost"


class ConnectorChoice(StrEnum):
    nixl = "nixl"
    mooncake = "mooncake"
    lmcache = "lmcache"
    none = "none"


@app.command()
def solve(
    cluster_file: ClusterArgument,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="plan file to write (default: stdout)")] = None,
    seed: Annotated[int, typer.Option(min=0, help="random seed; same input and seed give the same plan")] = 0,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, help="seconds of search at most")] = 60.0,
    objective: Annotated[Objective | None, typer.Option(help="maximise throughput, or throughput per $")] = None,
    slo_ttft: Annotated[str | None, typer.Option("--slo-ttft", help="time-to-first-token SLO, e.g. 2s")] = None,
    slo_tpot: Annotated[str | None, typer.Option("--slo-tpot", help="time-per-output-token SLO, e.g. 100ms")] = None,
    connector: Annotated[
        ConnectorChoice, typer.Option(help="KV connector; anything but 'none' imposes decode PP=1 and TP divisibility")
    ] = ConnectorChoice.nixl,
    baseline: Annotated[Path | None, typer.Option(help="running plan to stay close to (fewest GPUs moved)")] = None,
    max_moved_gpus: Annotated[
        int | None,
        typer.Option("--max-moved-gpus", min=0, help="with --baseline: GPUs that may change replica or role"),
    ] = None,
    max_loss: Annotated[
        float, typer.Option("--max-loss", min=0, max=100, help="with --baseline: % throughput to give up for stability")
    ] = 5.0,
    colocated: Annotated[
        bool,
        typer.Option(
            "--colocated", help="also consider colocated replicas (prefill + decode on one engine) where they win"
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or tables")] = False,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Plan prefill and decode replicas, their layouts and KV routes for a cluster file."""
    cluster = load(cluster_file, profiles, calibration)
    overrides = {
        "slo_ttft": parse_duration_option("--slo-ttft", slo_ttft),
        "slo_tpot": parse_duration_option("--slo-tpot", slo_tpot),
    }
    cluster = dataclasses.replace(cluster, **{k: v for k, v in overrides.items() if v is not None})
    if max_moved_gpus is not None and baseline is None:
        raise InputError("option --max-moved-gpus needs --baseline (the plan whose GPUs should stay put).")
    previous = read_plan(baseline) if baseline is not None else None
    options = {"seed": seed, "time_limit": time_limit, "connector": connector.value, "colocated": colocated}
    options |= {"objective": objective.value if objective else None, "baseline": previous}
    options |= {"max_moved_gpus": max_moved_gpus, "max_loss": max_loss / 100}
    began = time.monotonic()
    plan = _solve_with_progress(cluster, quiet, options)
    if previous is not None:
        plan = plan.model_copy(update={"solver": plan.solver.model_copy(update={"baseline": str(baseline)})})
    seconds = time.monotonic() - began
    if output is None:
        print(plan_to_yaml(plan), end="")
    else:
        write_plan(plan, output)
    if not quiet:
        _report(plan, cluster_file, output, seconds)


def _solve_with_progress(cluster: Cluster, quiet: bool, options: dict) -> Plan:
    """planner.solve with a progress bar on stderr showing the best throughput so far."""
    with Progress(
        TextColumn("[bold]solving[/]"),
        BarColumn(),
        TextColumn("{task.fields[best]}"),
        TimeElapsedColumn(),
        console=console_err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task("solve", total=1.0, best="")

        def progress(fraction: float, throughput: float) -> None:
            bar.update(task, completed=fraction, best=f"best {throughput:.3f} req/s")

        return planner.solve(cluster, progress=progress, **options)


def _report(plan: Plan, cluster_file: Path, output: Path | None, seconds: float) -> None:
    out = console if output is not None else console_err
    out.print(summary_table(plan, title=f"plan for {cluster_file}"))
    out.print(replicas_table(plan))
    out.print(routes_table(plan))
    out.print(f"solved in {seconds:.2f} s ({solver_facts(plan)})")
    if output is not None:
        out.print(f"wrote {output}")


def solver_facts(plan: Plan) -> str:
    """How the search went, in words: steps, why it stopped, replica counts tried, GPUs moved."""
    s = plan.solver
    facts = [f"{s.iterations} refinement steps", "converged" if s.converged else "stopped at the time limit"]
    if s.k_tried:  # empty when re-planning: the search starts from the running plan's replicas
        facts.append(f"replica counts tried: {', '.join(str(k) for k in s.k_tried)}")
    if s.baseline:
        facts.append(f"{s.moved_gpus} GPUs moved from {s.baseline}")
    return ", ".join(facts)
