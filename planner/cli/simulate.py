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
    PlanArgument,
    ProfilesOption,
    app,
    console,
    evaluate_plan_file,
    load,
    parse_duration_option,
)
from planner.cli.render import metric_table
from planner.errors import InputError
from planner.inputs.workload import read_trace
from planner.reference.baselines import baseline
from planner.reference.compare import compare_plans, plan_all
from planner.sim.arrivals import replay
from planner.sim.metrics import SimResult, Slo
from planner.sim.sweeps import (
    DEFAULT_DURATION_S,
    default_rate,
    default_slo,
    goodput,
    simulate_rate,
    simulate_replay,
)
from planner.yamlio import write_atomic


def _positive(value: float | None, option: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise InputError(f"{option}: expected a positive number, got {value}.")


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
            f"SLO attainment (TTFT ≤ {result.slo.ttft:g}s, TPOT ≤ {result.slo.tpot * 1e3:g}ms)",
            f"{result.slo_attainment:.1%}",
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


@app.command("simulate")
def simulate_command(
    plan_file: PlanArgument,
    cluster: ClusterOption = None,
    rate: Annotated[float | None, typer.Option(help="Poisson arrivals, req/s (default: 80% of the plan's)")] = None,
    trace: Annotated[Path | None, typer.Option(help="replay a CSV (TIMESTAMP,ContextTokens,GeneratedTokens)")] = None,
    duration: Annotated[float | None, typer.Option(help="seconds of arrivals (default 300; trace: all)")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="random seed (arrivals and lengths)")] = 0,
    speedup: Annotated[float, typer.Option("--speedup", help="divide trace timestamps by this")] = 1.0,
    ttft: Annotated[str | None, typer.Option(help="TTFT SLO, e.g. 2s (default: the cluster's, else 5s)")] = None,
    tpot: Annotated[str | None, typer.Option(help="TPOT SLO, e.g. 100ms (default: the cluster's, else 200ms)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
    sweep: Annotated[bool, typer.Option("--sweep", help="bisect the highest rate with ≥ 90% SLO attainment")] = False,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Simulate a plan serving Poisson or trace-replayed requests; print latency, throughput and utilisation."""
    for value, option in (
        (rate, "--rate"),
        (duration, "--duration"),
        (speedup, "--speedup"),
    ):
        _positive(value, option)
    if rate is not None and trace is not None:
        raise InputError("--rate and --trace: give one request source, not both.")
    if sweep and trace is not None:
        raise InputError("--sweep bisects a Poisson rate; it cannot be combined with --trace.")
    _, plan, the_cluster, _ = evaluate_plan_file(plan_file, cluster, profiles, calibration)
    base = default_slo(the_cluster)
    slo = Slo(parse_duration_option("--ttft", ttft) or base.ttft, parse_duration_option("--tpot", tpot) or base.tpot)
    if sweep:
        seconds = duration or DEFAULT_DURATION_S
        best, result = goodput(plan, the_cluster, duration=seconds, seed=seed, slo=slo)
        payload: dict[str, object] = {"goodput_rps": best, "at_goodput": result.to_json() if result else None}
        title = f"{plan_file}: goodput {best:.3f} req/s (≥ 90% within SLO; max-flow {plan.summary.throughput_rps:.3f})"
    else:
        if trace is not None:
            arrivals = replay(read_trace(trace), speedup, duration)
            if len(arrivals) == 0:
                raise InputError(f"{trace}: no request arrives within --duration {duration} s.")
            result = simulate_replay(plan, the_cluster, arrivals, seed=seed, slo=slo)
            source = f"trace {trace} (speedup {speedup:g})"
        else:
            seconds = duration or DEFAULT_DURATION_S
            offered = rate or default_rate(plan)
            result = simulate_rate(plan, the_cluster, offered, duration=seconds, seed=seed, slo=slo)
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="also write a PNG of goodput and $ per 1M output tokens (matplotlib)")
    ] = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Plan the cluster with hexgen2 and baseline planners; simulate each and compare throughput per dollar."""
    _positive(time_limit, "--time-limit")
    _positive(duration, "--duration")
    names = [n.strip() for n in baselines.split(",") if n.strip()]
    for name in names:
        baseline(name)  # fail fast on a typo, before any planning
    cluster = load(cluster_file, profiles, calibration)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: expected a file ending in .png.")
    rows = compare_plans(cluster, plan_all(cluster, names, seed, time_limit), duration=duration, seed=seed)
    if plot is not None:
        from planner.outputs.plots import compare_plot

        write_atomic(plot, compare_plot(rows, f"{cluster_file}: plans compared by simulation"))
    if as_json:
        print(json.dumps(rows, sort_keys=True, indent=2, ensure_ascii=False))
        return
    console.print(compare_table(rows, f"{cluster_file}: plans compared by simulation ({duration:g} s per run)"))


def compare_table(rows: list[dict[str, object]], title: str) -> Table:
    table = Table(title=title)
    columns = (
        "planner",
        "GPUs",
        "$/h",
        "max-flow req/s",
        "sim req/s",
        "goodput req/s",
        "e2e p50 / p99 s",
        "out tok per $",
        "ours ÷ this",
        "ours ÷ this per $",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "planner" else "right")
    notes: list[str] = []
    for row in rows:
        if "infeasible" in row:
            table.add_row(str(row["planner"]), *(["—"] * 8), "infeasible")
            notes.append(f"{row['planner']}: {row['infeasible']}")
            continue
        table.add_row(
            str(row["planner"]),
            str(row["gpus"]),
            f"{row['cost_per_hour_usd']:.2f}",
            f"{row['predicted_rps']:.2f}",
            f"{row['throughput_rps']:.2f}",
            f"{row['goodput_rps']:.2f}",
            f"{row['e2e_p50_s']:.1f} / {row['e2e_p99_s']:.1f}",
            f"{row['output_tokens_per_usd']:,.0f}",
            f"{row.get('ours_over_this', math.nan):.2f}×",
            f"{row.get('ours_over_this_per_usd', math.nan):.2f}×",
        )
    if rows and "common_load_rps" in next((r for r in rows if "gpus" in r), {}):
        load = next(r for r in rows if "gpus" in r)["common_load_rps"]
        table.caption = (
            f"sim req/s: served under 1.5× overload; goodput: highest rate with ≥ 90% of requests in SLO; "
            f"latency at a common {load:.2f} req/s (80% of the weakest plan)"
        )
    table.caption = "\n".join([table.caption or "", *notes]).strip()
    return table
