"""`hexplan simulate` (a plan under a request stream) and `hexplan compare` (ours vs baseline planners)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from planner.cli.app import (
    CalibrationOption,
    ClusterArgument,
    ClusterOption,
    MaxRequestsOption,
    PlanArgument,
    ProfilesOption,
    SloAttainmentOption,
    app,
    check_positive,
    console,
    evaluate_plan_file,
    load,
    note,
    slo_override,
)
from planner.cli.render import metric_table
from planner.errors import InputError
from planner.inputs.problem import Cluster
from planner.inputs.workload import read_trace
from planner.plans.schema import Plan
from planner.plans.slo import resolve_slo, slo_line, with_slo
from planner.reference.baselines import baseline
from planner.reference.compare import compare_plans, plan_all
from planner.sim.arrivals import MAX_REQUESTS, replay
from planner.sim.metrics import SimResult
from planner.sim.sweeps import (
    DEFAULT_DURATION_S,
    NO_SLO,
    default_rate,
    goodput,
    simulate_rate,
    simulate_replay,
)
from planner.yamlio import write_atomic

# simulate also takes the older --ttft/--tpot spellings; messages name both
SLO_OPTION_NAMES = ("--slo-ttft/--ttft", "--slo-tpot/--tpot")
TtftOption = Annotated[str | None, typer.Option("--slo-ttft", "--ttft", help="TTFT SLO, e.g. 2s (default: the plan's)")]
TpotOption = Annotated[
    str | None, typer.Option("--slo-tpot", "--tpot", help="TPOT SLO, e.g. 100ms (default: the plan's)")
]


def _sweep(
    plan_file: Path, plan: Plan, cluster: Cluster, seconds: float, seed: int, max_requests: int
) -> tuple[dict[str, object], str, SimResult | None]:
    """`simulate --sweep`: the simulated goodput beside the plan's promise."""
    if cluster.slo is None:
        raise InputError(f"{plan_file}: --sweep: {NO_SLO}")
    best, result = goodput(plan, cluster, duration=seconds, seed=seed, max_requests=max_requests)
    payload: dict[str, object] = {"goodput_rps": best, "at_goodput": result.to_json() if result else None}
    promised = plan.summary.goodput_rps
    title = (
        f"{plan_file}: simulated goodput {best:.3f} req/s ({cluster.slo.describe()}); the plan promises "
        + (f"{promised:.3f}" if promised is not None else "none (no SLO)")
        + f", max-flow {plan.summary.throughput_rps:.3f}"
    )
    return payload, title, result


def _ms(values: dict[str, float]) -> str:
    return " / ".join("—" if math.isnan(v) else f"{v * 1e3:,.0f}" for v in values.values())


def result_table(result: SimResult, title: str) -> Table:
    rows = [
        ("offered load", f"{result.offered_rps:.3f} req/s"),
        ("throughput", f"{result.throughput_rps:.3f} req/s"),
        ("output tokens", f"{result.output_tokens_per_s:,.0f} tokens/s"),
        ("TTFT p50 / p90 / p99", f"{_ms(result.ttft_s)} ms"),
        ("TPOT p50 / p90 / p99", f"{_ms(result.tpot_s)} ms"),
        ("end-to-end p50 / p90 / p99", f"{_ms(result.e2e_s)} ms"),
        (
            f"SLO attainment ({result.slo.describe()})" if result.slo is not None else "SLO attainment",
            f"{result.slo_attainment:.1%}" if result.slo is not None else "not defined (no SLO)",
        ),
        (
            "requests arrived / finished / dropped / unfinished",
            f"{result.arrived} / {result.finished} / {result.dropped} / {result.unfinished}",
        ),
        ("preemptions", str(result.preemptions)),
        ("max queue (waiting requests)", str(max((n for _, n in result.queue), default=0))),
    ]
    rows += [(f"utilisation {rid}", f"{u:.0%}") for rid, u in result.replica_utilisation.items()]
    rows += [(f"link {key}", f"{u:.0%} busy") for key, u in result.link_utilisation.items()]
    return metric_table(title, rows)


def _check_sources(rate: float | None, trace: Path | None, duration: float | None, speedup: float, sweep: bool) -> None:
    """Option errors before any file is read: finite positive numbers, one request source."""
    for value, option in ((rate, "--rate"), (duration, "--duration"), (speedup, "--speedup")):
        check_positive(value, option)
    if rate is not None and trace is not None:
        raise InputError("--rate and --trace: give one request source, not both.")
    if sweep and (trace is not None or rate is not None):
        given = "--trace" if trace is not None else "--rate"
        raise InputError(f"--sweep bisects a Poisson rate itself; it cannot be combined with {given}.")


@app.command("simulate")
def simulate_command(
    plan_file: PlanArgument,
    cluster: ClusterOption = None,
    rate: Annotated[float | None, typer.Option(help="Poisson arrivals, req/s (default: 80% of the plan's)")] = None,
    trace: Annotated[Path | None, typer.Option(help="replay a CSV (TIMESTAMP,ContextTokens,GeneratedTokens)")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds of arrivals (default 300; trace: all)")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="random seed (arrivals and lengths)")] = 0,
    speedup: Annotated[float, typer.Option("--speedup", help="divide trace timestamps by this")] = 1.0,
    ttft: TtftOption = None,
    tpot: TpotOption = None,
    attainment: SloAttainmentOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="goodput: bisect the highest rate meeting the SLO's attainment")
    ] = False,
    max_requests: MaxRequestsOption = MAX_REQUESTS,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Simulate a plan serving Poisson or trace-replayed requests; print latency, throughput and utilisation."""
    _check_sources(rate, trace, duration, speedup, sweep)
    override = slo_override(ttft, tpot, attainment, names=SLO_OPTION_NAMES)
    _, plan, the_cluster, cluster_file = evaluate_plan_file(plan_file, cluster, profiles, calibration, override)
    if plan.summary.throughput_rps <= 0:
        raise InputError(
            f"{plan_file}: the plan routes no traffic on {cluster_file} (throughput 0): there is nothing to simulate.",
            hint="re-solve the cluster or check the plan's replicas and routes",
        )
    if sweep:
        payload, title, result = _sweep(
            plan_file, plan, the_cluster, duration or DEFAULT_DURATION_S, seed, max_requests
        )
    else:
        if trace is not None:
            try:
                arrivals = replay(read_trace(trace), speedup, duration, max_requests=max_requests)
            except InputError as exc:  # --speedup or --max-requests against this trace: name it
                message = exc.message if str(trace) in exc.message else f"{trace}: {exc.message}"
                raise InputError(message, hint=exc.hint) from None
            if len(arrivals) == 0:
                raise InputError(f"{trace}: no request arrives within --duration {duration} s.")
            result = simulate_replay(plan, the_cluster, arrivals, seed=seed)
            source = f"trace {trace} (speedup {speedup:g})"
        else:
            seconds = duration or DEFAULT_DURATION_S
            offered = rate or default_rate(plan)
            result = simulate_rate(plan, the_cluster, offered, duration=seconds, seed=seed, max_requests=max_requests)
            source = f"Poisson {offered:.3f} req/s for {seconds:g} s, seed {seed}"
        payload = result.to_json()
        title = f"{plan_file}: {source} (max-flow {plan.summary.throughput_rps:.3f} req/s)"
    if as_json:
        print(json.dumps(payload, sort_keys=True, indent=2, ensure_ascii=False))
    elif result is not None:
        console.print(result_table(result, title))
    else:
        console.print(f"{title}: no rate tried met the SLO.")


@app.command("compare")
def compare_command(
    cluster_file: ClusterArgument,
    baselines: Annotated[str, typer.Option("--baselines", help="comma-separated: distserve,hexgen,vllm")] = (
        "distserve,hexgen,vllm"
    ),
    time_limit: Annotated[float, typer.Option("--time-limit", help="seconds per planner")] = 30.0,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    duration: Annotated[float, typer.Option("--duration", help="simulated seconds per run")] = 300.0,
    ttft: TtftOption = None,
    tpot: TpotOption = None,
    attainment: SloAttainmentOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    max_requests: MaxRequestsOption = MAX_REQUESTS,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="also write a PNG of goodput and $ per 1M output tokens (matplotlib)")
    ] = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Plan the cluster with hexgen2 and baseline planners; simulate each and rank them by goodput."""
    check_positive(time_limit, "--time-limit")
    check_positive(duration, "--duration")
    names = [n.strip() for n in baselines.split(",") if n.strip()]
    for name in names:
        baseline(name)  # fail fast on a typo, before any planning
    cluster = load(cluster_file, profiles, calibration)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a file ending in .png.")
    slo, source = resolve_slo(None, cluster, slo_override(ttft, tpot, attainment, names=SLO_OPTION_NAMES))
    cluster = with_slo(cluster, slo)
    note(slo_line(slo, source))
    plans = plan_all(cluster, names, seed, time_limit)
    rows = compare_plans(cluster, plans, duration=duration, seed=seed, max_requests=max_requests)
    if plot is not None:
        from planner.outputs.plots import compare_plot

        write_atomic(plot, compare_plot(rows, f"{cluster_file}: plans compared by simulation"))
    if as_json:
        print(json.dumps(rows, sort_keys=True, indent=2, ensure_ascii=False))
        return
    console.print(compare_table(rows, f"{cluster_file}: plans ranked by simulation ({duration:g} s per run)"))


def _number(value: object, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def compare_table(rows: list[dict[str, object]], title: str) -> Table:
    """Rendering only: planner.reference.compare ranks the rows and computes every figure."""
    table = Table(title=title)
    columns = (
        "rank",
        "planner",
        "GPUs",
        "$/h used",
        "goodput req/s",
        "goodput per $",
        "predicted goodput",
        "saturated req/s",
        "bottleneck",
        "e2e p50 / p99 s",
        "ours ÷ this",
        "ours ÷ this per $",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("planner", "bottleneck") else "right")
    notes: list[str] = []
    for row in rows:
        if "infeasible" in row:
            table.add_row("—", str(row["planner"]), *(["—"] * 9), "infeasible")
            notes.append(f"{row['planner']}: {row['infeasible']}")
            continue
        table.add_row(
            str(row["rank"]),
            str(row["planner"]),
            str(row["gpus"]),
            f"{row['cost_per_hour_usd']:.2f}",
            _number(row["goodput_rps"], ".2f"),
            f"{row['goodput_per_usd']:,.0f}",
            _number(row["predicted_goodput_rps"], ".2f"),
            f"{row['throughput_rps']:.2f}",
            str(row["bottleneck"]),
            f"{row['e2e_p50_s']:.1f} / {row['e2e_p99_s']:.1f}",
            f"{row.get('ours_over_this', math.nan):.2f}×",
            f"{row.get('ours_over_this_per_usd', math.nan):.2f}×",
        )
    ranked = [r for r in rows if "rank" in r]
    if ranked:
        by = (
            "simulated goodput"
            if ranked[0]["metric"] == "goodput_rps"
            else "saturated throughput (no SLO: goodput undefined)"
        )
        table.caption = (
            f"ranked by {by}; goodput per $: requests per $ of the cluster's "
            f"${ranked[0]['cluster_cost_per_hour_usd']:.2f}/h; "
            f"latency at a common {ranked[0]['common_load_rps']:.2f} req/s (80% of the weakest plan's saturated rate)"
        )
    table.caption = "\n".join([table.caption or "", *notes]).strip()
    return table
