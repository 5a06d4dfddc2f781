"""`hexplan compare`: plan one cluster with hexgen2 and the baseline planners, simulate each plan.

Every planner's plan is simulated under the same load: saturation throughput (1.5× its max-flow
figure offered), goodput (the highest Poisson rate with ≥ 90 % of requests within the SLO), and
latency at a common load (80 % of the weakest plan's saturation throughput). Ratios are ours ÷ theirs.
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


def compare_plans(
    cluster: Cluster,
    plans: list[tuple[str, Plan | str]],
    *,
    duration: float,
    seed: int,
    max_requests: int = MAX_REQUESTS,
) -> list[dict[str, object]]:
    """Saturation throughput, goodput and latency at a common load for each plan; ratios ours / theirs.

    Raises InputError (naming --max-requests) when a run would simulate more than `max_requests` requests."""
    limit = {"duration": duration, "seed": seed, "max_requests": max_requests}
    runs = {name: saturation(plan, cluster, **limit) for name, plan in plans if isinstance(plan, Plan)}
    common = 0.8 * min((r.throughput_rps for r in runs.values()), default=0.0)
    rows: list[dict[str, object]] = []
    for name, plan in plans:
        if not isinstance(plan, Plan):
            rows.append({"planner": name, "infeasible": plan})
            continue
        best, _ = goodput(plan, cluster, **limit)
        at_common = simulate_rate(plan, cluster, common, **limit) if common > 0 else None
        cost = plan.summary.cost_per_hour_usd
        tokens = runs[name].output_tokens_per_s
        rows.append(
            {
                "planner": name,
                "gpus": plan.summary.gpus_used,
                "cost_per_hour_usd": cost,
                "predicted_rps": plan.summary.throughput_rps,
                "throughput_rps": runs[name].throughput_rps,
                "goodput_rps": best,
                "common_load_rps": common,
                "e2e_p50_s": at_common.e2e_s["p50"] if at_common else float("nan"),
                "e2e_p99_s": at_common.e2e_s["p99"] if at_common else float("nan"),
                "output_tokens_per_usd": tokens * 3600 / cost if cost > 0 else float("nan"),
            }
        )
    ours = rows[0] if "throughput_rps" in rows[0] else None
    for row in rows:
        if ours and "throughput_rps" in row:
            row["ours_over_this"] = _ratio(ours["throughput_rps"], row["throughput_rps"])
            row["ours_over_this_per_usd"] = _ratio(ours["output_tokens_per_usd"], row["output_tokens_per_usd"])
    return rows


def _ratio(ours: object, theirs: object) -> float:
    return float(ours) / float(theirs) if float(theirs) > 0 else math.inf  # type: ignore[arg-type]
