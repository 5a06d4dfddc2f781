"""`hexplan compare`: plan one cluster with hexgen2 and the baseline planners, simulate each plan, rank them.

Every plan is simulated under the same SLO and seed: goodput (the highest Poisson rate with at least the
SLO's attainment of requests meeting it, by bisection), saturated throughput (1.5× its max-flow figure
offered) and latency at a common load (80 % of the weakest plan's saturated throughput).

Ranking and ratios are by simulated goodput, never by saturated throughput: a plan that serves more
requests within the SLO always ranks above one that serves fewer, and every "ours ÷ this" ratio is below 1
against a plan with more goodput. Goodput per $ is per $/h of the cluster — every plan of one cluster file
rents the same GPUs, used or not (the `$/h` column is what the GPUs a plan uses cost, what it would cost
if the others were returned) — so it orders plans exactly as goodput does and no per-$ ratio can favour a
plan that serves less. Without an SLO goodput is not defined: rows are ranked and compared by saturated
throughput instead, and the result says so (`metric`).
"""

from __future__ import annotations

import math

import planner
from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan
from planner.reference.baselines import baseline
from planner.sim.arrivals import MAX_REQUESTS
from planner.sim.sweeps import goodput, saturation, simulate_rate

COMMON_LOAD = 0.8


def plan_all(cluster: Cluster, names: list[str], seed: int, time_limit: float) -> list[tuple[str, Plan | str]]:
    """(name, plan or the reason there is none) for ours and each baseline."""
    planners = [("hexgen2", planner.solve)] + [(name, baseline(name)) for name in names]
    out: list[tuple[str, Plan | str]] = []
    for name, make in planners:
        try:
            out.append((name, make(cluster, seed=seed, time_limit=time_limit)))
        except InfeasibleError as exc:
            out.append((name, exc.message))
    return out


def _row(name: str, plan: Plan, cluster: Cluster, saturated: float, tokens: float, limit: dict) -> dict:
    """One plan's simulated figures (the common-load latency is added by the caller); `limit`: the runs'
    duration, seed and max_requests."""
    best = goodput(plan, cluster, **limit)[0] if cluster.slo is not None else None
    rented = cluster.total_price_per_hour
    metric = best if best is not None else saturated
    return {
        "planner": name,
        "gpus": plan.summary.gpus_used,
        "cost_per_hour_usd": plan.summary.cost_per_hour_usd,
        "cluster_cost_per_hour_usd": rented,
        "predicted_rps": plan.summary.throughput_rps,
        "predicted_goodput_rps": plan.summary.goodput_rps,
        "throughput_rps": saturated,
        "goodput_rps": best,
        "goodput_per_usd": metric * 3600 / rented if rented > 0 else math.inf,
        "output_tokens_per_usd": tokens * 3600 / rented if rented > 0 else math.inf,
        "bottleneck": plan.summary.bottleneck,
    }


def compare_plans(
    cluster: Cluster,
    plans: list[tuple[str, Plan | str]],
    *,
    duration: float,
    seed: int,
    max_requests: int = MAX_REQUESTS,
) -> list[dict[str, object]]:
    """One row per planner, best first (module docstring), each with `rank`, `metric` and ratios of ours to it.

    Infeasible planners come last with their reason. Raises InputError (naming --max-requests) when a run
    would simulate more than `max_requests` requests."""
    limit = {"duration": duration, "seed": seed, "max_requests": max_requests}
    runs = {name: saturation(plan, cluster, **limit) for name, plan in plans if isinstance(plan, Plan)}
    common = COMMON_LOAD * min((r.throughput_rps for r in runs.values()), default=0.0)
    rows: list[dict[str, object]] = []
    for name, plan in plans:
        if not isinstance(plan, Plan):
            continue
        row = _row(name, plan, cluster, runs[name].throughput_rps, runs[name].output_tokens_per_s, limit)
        at_common = simulate_rate(plan, cluster, common, **limit) if common > 0 else None
        row["common_load_rps"] = common
        row["e2e_p50_s"] = at_common.e2e_s["p50"] if at_common else float("nan")
        row["e2e_p99_s"] = at_common.e2e_s["p99"] if at_common else float("nan")
        rows.append(row)
    metric = "goodput_rps" if cluster.slo is not None else "throughput_rps"
    rows.sort(key=lambda r: (-float(r[metric]), float(r["cost_per_hour_usd"]), str(r["planner"])))
    ours = next((r for r in rows if r["planner"] == "hexgen2"), None)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
        row["metric"] = metric
        if ours is not None:
            row["ours_over_this"] = _ratio(ours[metric], row[metric])
            row["ours_over_this_per_usd"] = _ratio(ours["goodput_per_usd"], row["goodput_per_usd"])
    rows += [{"planner": name, "infeasible": plan} for name, plan in plans if not isinstance(plan, Plan)]
    return rows


def _ratio(ours: object, theirs: object) -> float:
    return float(ours) / float(theirs) if float(theirs) > 0 else math.inf  # type: ignore[arg-type]
