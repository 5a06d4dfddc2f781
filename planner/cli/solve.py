"""`hexplan solve`: run the scheduler on a cluster file and write plan.yaml."""

from __future__ import annotations

import json
import math
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
    SloAttainmentOption,
    app,
    check_positive,
    console,
    console_err,
    load,
    note,
    parse_duration_option,
    slo_override,
)
from planner.cli.render import pareto_table, reasons_lines, replicas_table, routes_table, summary_table
from planner.errors import InputError
from planner.inputs.problem import Cluster, Slo
from planner.plans.schema import Plan, plan_to_yaml, read_plan, write_plan
from planner.plans.slo import resolve_slo, slo_line, with_slo
from planner.reference.pareto import DEFAULT_TPOTS, DEFAULT_TTFTS, pareto_frontier
from planner.reference.verify import VERIFY_MAX_GPUS
from planner.yamlio import write_atomic


class Objective(StrEnum):
    throughput = "throughput"
    cost = "cost"
    goodput = "goodput"
    goodput_per_usd = "goodput_per_usd"


class RolesChoice(StrEnum):
    mixed = "mixed"
    disaggregated = "disaggregated"
    colocated = "colocated"


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
    objective: Annotated[
        Objective | None,
        typer.Option(help="default: the cluster file's, else goodput with an SLO, else throughput"),
    ] = None,
    slo_ttft: Annotated[str | None, typer.Option("--slo-ttft", help="time-to-first-token SLO, e.g. 2s")] = None,
    slo_tpot: Annotated[str | None, typer.Option("--slo-tpot", help="time-per-output-token SLO, e.g. 100ms")] = None,
    slo_attainment: SloAttainmentOption = None,
    roles: Annotated[
        RolesChoice,
        typer.Option(help="mixed: prefill, decode or colocated per group; disaggregated: HexGen-2; colocated"),
    ] = RolesChoice.mixed,
    verify: Annotated[
        bool | None,
        typer.Option(
            "--verify/--no-verify",
            help=f"re-rank the best candidate plans by simulation (default: on up to {VERIFY_MAX_GPUS} GPUs)",
        ),
    ] = None,
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
        bool, typer.Option("--colocated", help="deprecated: the same as --roles mixed (the default)", hidden=True)
    ] = False,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="the goodput frontier over a sweep of TTFT × TPOT SLOs (no plan file)")
    ] = False,
    pareto_ttft: Annotated[str, typer.Option("--pareto-ttft", help="TTFT SLOs of the sweep")] = DEFAULT_TTFTS,
    pareto_tpot: Annotated[str, typer.Option("--pareto-tpot", help="TPOT SLOs of the sweep")] = DEFAULT_TPOTS,
    as_json: Annotated[bool, typer.Option("--json", help="with --pareto: print the points as JSON")] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="with --pareto: also write a PNG of the frontier (matplotlib: the `plot` extra)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or tables")] = False,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Plan prefill, decode and colocated replicas, their layouts and KV routes for a cluster file.

    Long because Typer declares every option in the signature; the body only resolves the SLO and hands
    over to --pareto or to solving."""
    check_positive(time_limit, "--time-limit")
    if not math.isfinite(max_loss):
        raise InputError(f"--max-loss: expected a percentage from 0 to 100, got {max_loss}.")
    _check_plot(plot, pareto)
    cluster = load(cluster_file, profiles, calibration)
    slo, source = resolve_slo(None, cluster, slo_override(slo_ttft, slo_tpot, slo_attainment))
    cluster = with_slo(cluster, slo)
    if colocated:
        console_err.print("note: --colocated is deprecated; it means --roles mixed, the default now.")
        roles = RolesChoice.mixed
    if pareto:
        _pareto(cluster, slo, pareto_ttft, pareto_tpot, as_json, seed, time_limit, roles, verify, plot)
        return
    if max_moved_gpus is not None and baseline is None:
        raise InputError("option --max-moved-gpus needs --baseline (the plan whose GPUs should stay put).")
    previous = read_plan(baseline) if baseline is not None else None
    options = {"seed": seed, "time_limit": time_limit, "connector": connector.value, "roles": roles.value}
    options |= {"objective": objective.value if objective else None, "baseline": previous, "verify": verify}
    options |= {"max_moved_gpus": max_moved_gpus, "max_loss": max_loss / 100}
    _solve_and_write(cluster, cluster_file, output, quiet, options, baseline)
    if not quiet:
        note(slo_line(slo, source))


def _solve_and_write(
    cluster: Cluster, cluster_file: Path, output: Path | None, quiet: bool, options: dict, baseline: Path | None
) -> None:
    """Solve (with a progress bar), write or print the plan, report it."""
    began = time.monotonic()
    plan = _solve_with_progress(cluster, quiet, options)
    if baseline is not None:
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
    for line in reasons_lines(plan):
        out.print(line)
    out.print(f"solved in {seconds:.2f} s ({solver_facts(plan)})")
    if (v := plan.solver.verification) is not None:
        out.print(
            f"verified by simulation: {v.candidates} candidate plans, kept {v.chosen} "
            f"(simulated {v.metric} {v.simulated_rps:.3f} req/s; the search's best: {v.search_best_rps:.3f})"
        )
    if output is not None:
        out.print(f"wrote {output}")


def _pareto(
    cluster: Cluster,
    slo: Slo | None,
    ttfts: str,
    tpots: str,
    as_json: bool,
    seed: int,
    time_limit: float,
    roles: RolesChoice,
    verify: bool | None,
    plot: Path | None,
) -> None:
    """`solve --pareto`: the logic is planner.reference.pareto; this parses the grid and renders (and with
    `plot`, draws: planner.outputs.plots.pareto_plot)."""
    grid_ttft = [parse_duration_option("--pareto-ttft", t.strip()) for t in ttfts.split(",") if t.strip()]
    grid_tpot = [parse_duration_option("--pareto-tpot", t.strip()) for t in tpots.split(",") if t.strip()]
    attainment = slo.attainment if slo is not None else 0.9
    points = pareto_frontier(
        cluster,
        [t for t in grid_ttft if t is not None],
        [t for t in grid_tpot if t is not None],
        attainment=attainment,
        seed=seed,
        time_limit=time_limit,
        roles=roles.value,
        verify=verify,
    )
    title = f"{cluster.source}: goodput over TTFT × TPOT SLOs (attainment {attainment:.0%})"
    if plot is not None:
        from planner.outputs.plots import ParetoPoint, pareto_plot

        write_atomic(plot, pareto_plot([ParetoPoint.model_validate(p.to_json()) for p in points], title))
        console_err.print(f"wrote {plot}", markup=False)
    if as_json:
        print(json.dumps([p.to_json() for p in points], sort_keys=True, indent=2, ensure_ascii=False))
        return
    console.print(pareto_table(points, title))


def _check_plot(plot: Path | None, pareto: bool) -> None:
    """--plot draws the --pareto frontier as a PNG: checked before any solving, matplotlib included (the
    optional `plot` extra; without it, an InputError naming the extra)."""
    if plot is None:
        return
    if not pareto:
        raise InputError(f"--plot {plot}: draws the Pareto frontier; give --pareto too (or use `hexplan draw`).")
    if plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a file ending in .png.")
    from planner.outputs.raster import pyplot

    pyplot()


def solver_facts(plan: Plan) -> str:
    """How the search went, in words: steps, why it stopped, replica counts tried, GPUs moved."""
    s = plan.solver
    facts = [f"{s.iterations} refinement steps", "converged" if s.converged else "stopped at the time limit"]
    if s.k_tried:  # empty when re-planning: the search starts from the running plan's replicas
        facts.append(f"replica counts tried: {', '.join(str(k) for k in s.k_tried)}")
    if s.baseline:
        facts.append(f"{s.moved_gpus} GPUs moved from {s.baseline}")
    return ", ".join(facts)
