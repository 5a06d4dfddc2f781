"""`hexplan provision`: which GPUs to rent for a budget or a target load; writes cluster.yaml and plan.yaml."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.app import CalibrationOption, ProfilesOption, app, catalog_from, console, console_err
from planner.cli.solve import ConnectorChoice, RolesChoice
from planner.errors import InputError, UnitError
from planner.provision.offers import load_offers
from planner.provision.output import output_paths, write_outputs
from planner.provision.results import Candidate, Provisioned
from planner.provision.search import Request, rank_key
from planner.provision.search import provision as run_provision
from planner.units import parse_price


def _request(budget: str | None, target_rps: float | None, options: dict) -> Request:
    if (budget is None) == (target_rps is None):
        raise InputError("give exactly one of --budget (e.g. '$30/h') and --target-rps (requests/s).")
    if target_rps is not None and not (math.isfinite(target_rps) and target_rps > 0):
        raise InputError(f"option --target-rps: expected a positive number of requests/s, got {target_rps}.")
    try:
        dollars = parse_price(budget) if budget is not None else None
    except UnitError as exc:
        raise InputError(f"option --budget: {exc}.") from None
    if dollars is not None and dollars <= 0:
        raise InputError(f"option --budget: {budget!r} buys nothing; give a positive price per hour such as '$30/h'.")
    return Request(budget=dollars, target=target_rps, **options)


@app.command()
def provision(
    offers_file: Annotated[Path, typer.Argument(help="offers file (see README: OFFERS.yaml)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for cluster.yaml and plan.yaml")],
    budget: Annotated[str | None, typer.Option(help="maximise goodput within this price, e.g. '$30/h'")] = None,
    target_rps: Annotated[
        float | None, typer.Option("--target-rps", help="minimise $/h for at least this goodput (requests/s)")
    ] = None,
    candidates: Annotated[int, typer.Option(min=1, max=32, help="mixes of the first cut to plan in full")] = 4,
    seed: Annotated[int, typer.Option(min=0, help="random seed of every solve")] = 0,
    time_limit: Annotated[float, typer.Option("--time-limit", min=0.1, help="seconds per full solve, at most")] = 10.0,
    connector: Annotated[ConnectorChoice, typer.Option(help="KV connector, as for solve")] = ConnectorChoice.nixl,
    roles: Annotated[RolesChoice, typer.Option(help="replica roles, as for solve")] = RolesChoice.mixed,
    verify: Annotated[
        bool | None, typer.Option("--verify/--no-verify", help="re-rank candidate plans by simulation, as for solve")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Choose which GPUs to rent from OFFERS.yaml; write OUTDIR/cluster.yaml and its plan OUTDIR/plan.yaml.

    The plan is the one `hexplan solve OUTDIR/cluster.yaml` writes with the same --seed, --time-limit,
    --connector, --roles, --verify, --profiles and --calibration (when its search converges)."""
    options = {"candidates": candidates, "seed": seed, "time_limit": time_limit, "connector": connector.value}
    request = _request(budget, target_rps, options | {"roles": roles.value, "verify": verify})
    catalog = catalog_from(profiles, calibration)
    offers = load_offers(offers_file, catalog)
    began = time.monotonic()
    with Progress(
        TextColumn("[bold]provision[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console_err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task("", total=1)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        result = run_provision(offers, catalog, output_paths(output)[0], request, progress)
    cluster_path, plan_path = write_outputs(result.chosen, output)
    if not quiet:
        console.print(mixes_table(result, request, offers_file))
        console.print(_facts(result, request, time.monotonic() - began))
        console.print(f"wrote {cluster_path} and {plan_path}")


def _rows(result: Provisioned, request: Request) -> list[tuple[Candidate, str]]:
    """The proposals and the best single-type mix, best first, each with its note."""
    shown = list(result.candidates)
    if result.single_type is not None and result.single_type.mix not in {c.mix for c in shown}:
        shown.append(result.single_type)
    ranked = [c for _, c in sorted(enumerate(shown), key=rank_key(request, shown))]
    rows = []
    for c in ranked:
        notes = ["chosen"] if c.mix == result.chosen.mix else []
        if result.single_type is not None and c.mix == result.single_type.mix:
            notes.append("best single type")
        rows.append((c, ", ".join(notes)))
    return rows


def mixes_table(result: Provisioned, request: Request, offers_file: Path) -> Table:
    goal = f"budget ${request.budget:.2f}/h" if request.budget is not None else f"target {request.target:g} req/s"
    table = Table(title=f"{offers_file}: mixes for {goal}")
    columns = ("mix", "GPUs", "$/h", "cut req/s", "goodput req/s", "$/M tokens", "bottleneck", "solve s", "")
    for column in columns:
        table.add_column(column, justify="left" if column in ("mix", "bottleneck", "") else "right")
    for c, note in _rows(result, request):
        cost = c.usd_per_million_tokens
        table.add_row(
            c.label,
            str(c.gpus),
            f"{c.cost_per_hour:.2f}",
            f"{c.proposal.goodput_rps:.3f}",
            f"{c.goodput_rps:.3f}",
            f"{cost:.3f}" if math.isfinite(cost) else "—",
            c.bottleneck,
            f"{c.seconds:.1f}" + ("" if c.converged or c.plan is None else " (limit)"),
            note,
        )
    table.caption = (
        "goodput: the plan's requests/s meeting the SLO at its attainment (without an SLO: its throughput); "
        "$/M tokens: the mix's rent per million output tokens at that goodput; cut: the integer program's estimate"
    )
    return table


def _facts(result: Provisioned, request: Request, seconds: float) -> str:
    stopped = result.solves - result.converged
    return (
        f"first cut: {result.kinds} replica kinds, {result.programs} integer programs in {result.cut_seconds:.2f} s; "
        f"full solve: {result.solves} plans in {result.solve_seconds:.1f} s (each ≤ {request.time_limit:g} s"
        + (f", {stopped} stopped at the limit" if stopped else ", all converged")
        + f"); {seconds:.1f} s in all"
    )
