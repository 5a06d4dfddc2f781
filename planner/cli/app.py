"""The Typer app and what every command shares: consoles, common options, loading a cluster."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

import planner
from planner.errors import InputError, PlanError, UnitError
from planner.inputs.catalog import Catalog, load_catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.plans.checks import evaluate
from planner.plans.schema import Plan, read_plan
from planner.plans.slo import SloOverride, resolve_slo, slo_line, with_slo
from planner.units import parse_time
from planner.yamlio import exists

app = typer.Typer(
    name="hexplan",
    help="Plan disaggregated (prefill/decode) LLM serving on heterogeneous GPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"hexplan (hexgen2) {planner.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Plan disaggregated (prefill/decode) LLM serving on heterogeneous GPUs."""


console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
console_err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)
_notes: list[str] = []


def note(text: str) -> None:
    """A line for stderr once the command has done its work (e.g. which SLO it used): printed by
    `planner.cli.main` after the command, dropped when it fails, so an error stays one paragraph."""
    _notes.append(text)


def flush_notes(show: bool) -> None:
    """Print the command's notes (`show`) or drop them; either way none are left for the next command."""
    if show:
        for text in _notes:
            console_err.print(text, soft_wrap=True, markup=False)
    _notes.clear()


ProfilesOption = Annotated[
    list[Path] | None,
    typer.Option("--profiles", help="extra catalogue directory (*.yaml with gpus/links/models); repeatable"),
]
CalibrationOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--calibration", help="calibration file (README: calibration files) on top of profiles/calibrations; repeatable"
    ),
]
ClusterArgument = Annotated[Path, typer.Argument(help="cluster file (see README: cluster.yaml)")]
PlanArgument = Annotated[Path, typer.Argument(help="plan file written by `hexplan solve`")]
SloAttainmentOption = Annotated[
    float | None,
    typer.Option("--slo-attainment", min=0.0, max=1.0, help="share of requests that must meet the SLO, e.g. 0.9"),
]
SloTtftOption = Annotated[str | None, typer.Option("--slo-ttft", help="TTFT SLO, e.g. 1s (default: the plan's)")]
SloTpotOption = Annotated[str | None, typer.Option("--slo-tpot", help="TPOT SLO, e.g. 100ms (default: the plan's)")]
MaxRequestsOption = Annotated[
    int,
    typer.Option(
        "--max-requests", min=1, help="refuse a run that would simulate more requests than this (memory and time)"
    ),
]
ClusterOption = Annotated[
    Path | None, typer.Option("--cluster", "-c", help="cluster file (default: the one the plan records)")
]


def catalog_from(profiles: list[Path] | None, calibrations: list[Path] | None = None) -> Catalog:
    return load_catalog(profiles or (), calibrations or ())


def load(cluster_file: Path, profiles: list[Path] | None, calibrations: list[Path] | None = None) -> Cluster:
    return load_cluster(cluster_file, catalog_from(profiles, calibrations))


def resolve_plan_cluster(plan_file: Path, recorded: str, given: Path | None) -> Path:
    """The cluster file a plan is evaluated against: --cluster, else the one the plan records.

    A recorded relative path is tried against the working directory, then the plan's directory.
    """
    if given is not None:
        return given
    recorded_path = Path(recorded)
    if recorded_path.is_absolute() or exists(recorded_path):
        return recorded_path
    return plan_file.parent / recorded_path


def load_plan_cluster(
    plan_file: Path,
    recorded: str,
    given: Path | None,
    profiles: list[Path] | None,
    calibrations: list[Path] | None = None,
) -> Cluster:
    """The cluster a plan is evaluated on; when the plan names it (no --cluster), errors name the plan too."""
    cluster_file = resolve_plan_cluster(plan_file, recorded, given)
    try:
        return load(cluster_file, profiles, calibrations)
    except InputError as exc:
        if given is not None:
            raise
        raise InputError(f"{plan_file}: cluster.file {recorded!r:.200}: {exc.message}", hint=exc.hint) from None


def evaluate_plan_file(
    plan_file: Path,
    given: Path | None,
    profiles: list[Path] | None,
    calibrations: list[Path] | None = None,
    slo: SloOverride | None = None,
) -> tuple[Plan, Plan, Cluster, Path]:
    """(recorded plan, honestly evaluated plan, cluster, cluster file): what every plan-reading command needs.

    The cluster carries the SLO the command uses (planner.plans.slo: `slo` from the command line over the
    plan's, else the cluster file's); which one, and where it came from, is printed on stderr. A plan that
    cannot run on the cluster raises PlanError naming both files."""
    recorded = read_plan(plan_file)
    cluster_file = resolve_plan_cluster(plan_file, recorded.cluster.file, given)
    cluster = load_plan_cluster(plan_file, recorded.cluster.file, given, profiles, calibrations)
    used, source = resolve_slo(recorded, cluster, slo, plan_name=str(plan_file))
    cluster = with_slo(cluster, used)
    try:
        honest = evaluate(recorded, cluster)
    except PlanError as exc:  # the message names the replica and field inside the plan
        raise PlanError(f"{plan_file} cannot run on {cluster_file}: {exc.message}", hint=exc.hint) from None
    note(f"{plan_file}: {slo_line(used, source)}")
    return recorded, honest, cluster, cluster_file


def slo_override(
    ttft: str | None,
    tpot: str | None,
    attainment: float | None,
    *,
    names: tuple[str, str] = ("--slo-ttft", "--slo-tpot"),
) -> SloOverride:
    """The SLO fields given on the command line (--slo-ttft, --slo-tpot, --slo-attainment), checked; `names`
    are the options as the command spells them (simulate also takes the older --ttft/--tpot)."""
    if attainment is not None and not 0.0 < attainment <= 1.0:
        raise InputError(f"option --slo-attainment: expected a share in (0, 1], e.g. 0.9, got {attainment}.")
    return SloOverride(parse_duration_option(names[0], ttft), parse_duration_option(names[1], tpot), attainment)


def check_positive(value: float | None, option: str) -> None:
    """A numeric option must be finite and > 0 (typer's range checks let nan and inf through)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InputError(f"{option}: expected a positive number, got {value}.")


def parse_duration_option(option: str, value: str | None) -> float | None:
    """A command-line duration such as '2s' or '100ms' (None stays None)."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except UnitError as exc:
        raise InputError(f"option {option}: {exc}.") from None
