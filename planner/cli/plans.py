"""Commands that read a plan: `show` it as tables, `evaluate` it honestly against a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import (
    CalibrationOption,
    ClusterOption,
    PlanArgument,
    ProfilesOption,
    SloAttainmentOption,
    SloTpotOption,
    SloTtftOption,
    app,
    console,
    evaluate_plan_file,
    slo_override,
)
from planner.cli.render import reasons_lines, replicas_table, routes_table, summary_table
from planner.plans.schema import plan_to_yaml, read_plan, round_floats, write_plan


@app.command()
def show(plan_file: PlanArgument) -> None:
    """Print a plan's summary, replicas and routes as recorded in the file."""
    plan = read_plan(plan_file)
    console.print(summary_table(plan, title=f"{plan_file} (as recorded)"))
    console.print(replicas_table(plan))
    console.print(routes_table(plan))


@app.command("evaluate")
def evaluate_command(
    plan_file: PlanArgument,
    cluster: ClusterOption = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the re-evaluated plan here")] = None,
    as_yaml: Annotated[bool, typer.Option("--yaml", help="print the re-evaluated plan as YAML")] = False,
    ttft: SloTtftOption = None,
    tpot: SloTpotOption = None,
    attainment: SloAttainmentOption = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Recompute every figure of a plan from its layouts (the file's claimed numbers are ignored); goodput
    under the plan's SLO unless --slo-* override it (written into the plan with -o)."""
    override = slo_override(ttft, tpot, attainment)
    plan, honest, _, cluster_path = evaluate_plan_file(plan_file, cluster, profiles, calibration, override)
    if output is not None:
        write_plan(honest, output)
    if as_yaml:
        print(plan_to_yaml(honest), end="")
        return
    console.print(summary_table(honest, title=f"{plan_file} evaluated on {cluster_path}"))
    console.print(replicas_table(honest))
    console.print(routes_table(honest))
    for line in reasons_lines(honest):
        console.print(line)
    claimed = plan.summary.throughput_rps
    if round_floats(claimed) != round_floats(honest.summary.throughput_rps):  # at the file's precision
        honest_rps = honest.summary.throughput_rps
        console.print(f"[yellow]note[/]: the file claims {claimed:.3f} req/s; evaluation gives {honest_rps:.3f}.")
