"""Solve with verification in the loop: the scheduler's best few candidate plans — and the reference
planners' plans in the roles allowed — re-ranked by simulation; the best simulated plan is kept.

Why: the search maximises a model (max-flow over capacities within the SLO), and a model can rank two
plans wrongly where queueing, KV-link sharing or chunked-prefill interference are subtler than its
bounds. The simulator (planner.sim, which routes requests with the launcher's own policy) is the
referee. Metric: simulated goodput — the highest Poisson rate at which the SLO's attainment of requests
meet it — when there is an SLO, else the simulated saturated throughput. Ties keep the earlier
candidate (the search's own best first), so verification only changes a plan when simulation says
another one serves more.

Layering: the scheduler (planner.scheduler) cannot import the simulator; it only returns its next best
states (`SearchResult.alternatives`). This module is the composition: the lowest package that may
import the scheduler, the plan assembly, the simulator and the reference planners (planner.reference
sits below planner.sim). `planner.solve` and `hexplan solve` call it.

Candidates whose model rate is below PROMISING of the best candidate's are not simulated (the search's own
best always is): the simulator referees close calls, it does not search.

Work bound: all runs of one verification together simulate at most VERIFY_TOKEN_BUDGET output tokens
(arrival rate × run length × mean output, counted before each run). A budget of simulated work rather
than wall time keeps plans deterministic; once it is spent, the bisection keeps its lower bound and the
remaining candidates are not simulated (the record counts those that were). Typical workloads (a few
hundred output tokens) never reach it; a workload of 2,560-token outputs would otherwise simulate for
many times the search's time limit.

Default: verification runs for clusters of at most VERIFY_MAX_GPUS GPUs — there each candidate costs a
few simulated minutes, seconds of wall time — and not for a plan solved as HexGen-2 was published
(disaggregated roles, no SLO), which keeps that mode's plans exactly the search's.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.errors import InfeasibleError, PlanError
from planner.inputs.problem import Cluster
from planner.plans.assemble import assemble, plan_from_search, solver_info
from planner.plans.checks import evaluate
from planner.plans.schema import Plan, SolverInfo, Verification
from planner.reference.baselines import BASELINES
from planner.scheduler.search import search
from planner.sim.sweeps import saturation, simulate_rate
from planner.types import Connector, Objective, RolesMode

VERIFY_MAX_GPUS = 64  # default --verify up to this many GPUs in the cluster
ALTERNATIVES = 1  # the search's next best plans simulated besides its best
RUN_REQUESTS = 800  # requests per simulated run: its length is this ÷ the rate, within the bounds below
MIN_DURATION_S, MAX_DURATION_S = 15.0, 60.0
VERIFY_TOKEN_BUDGET = 8e6  # simulated output tokens per verification (module docstring): ~40 typical runs
GOODPUT_STEPS = 4  # bisection runs per candidate, around its promised goodput (1/16 of the bracket)
PROMISING = 0.9  # candidates whose model rate is below this share of the best one's are not simulated
BASELINES_FOR: dict[RolesMode, tuple[str, ...]] = {  # reference planners whose plans a mode admits
    "disaggregated": ("distserve",),
    "colocated": ("hexgen", "vllm"),
    "mixed": ("distserve", "hexgen", "vllm"),
}
Progress = Callable[[float, float], None]


def verifies_by_default(cluster: Cluster, roles: RolesMode) -> bool:
    """The --verify default (module docstring)."""
    return len(cluster.gpus) <= VERIFY_MAX_GPUS and (cluster.slo is not None or roles != "disaggregated")


def run_seconds(rate: float) -> float:
    """Simulated seconds per verification run at `rate` req/s: about RUN_REQUESTS requests."""
    return min(MAX_DURATION_S, max(MIN_DURATION_S, RUN_REQUESTS / max(rate, 1e-9)))


class WorkBudget:
    """Simulated output tokens left to one verification (module docstring: Work bound)."""

    def __init__(self, tokens: float = VERIFY_TOKEN_BUDGET) -> None:
        self.left = tokens

    def spend(self, cluster: Cluster, rate: float, seconds: float) -> bool:
        """Charge a run of `seconds` at `rate` req/s; False (nothing charged) when the budget is spent."""
        if self.left <= 0.0:
            return False
        self.left -= rate * seconds * cluster.workload.output.mean
        return True


def simulated_rate(
    plan: Plan, cluster: Cluster, *, seed: int, duration: float | None = None, budget: WorkBudget | None = None
) -> float:
    """The verifier's metric for one plan (module docstring), requests/s: simulated goodput, bisected between
    half and twice the plan's promise (its analytic bound is conservative, so the knee is usually above it;
    below half it is bisected from 0), or without an SLO the saturated output tokens/s in requests/s.
    Runs last `duration` simulated seconds, default `run_seconds` of the plan's rate; with a `budget`, the
    bisection stops at its lower bound when the budget is spent (the first run always happens)."""
    budget = budget or WorkBudget(float("inf"))
    if cluster.slo is None:
        seconds = duration or run_seconds(plan.summary.throughput_rps)
        budget.spend(cluster, 1.5 * plan.summary.throughput_rps, seconds)
        run = saturation(plan, cluster, duration=seconds, seed=seed)
        return run.output_tokens_per_s / cluster.workload.output.mean
    promise = plan.summary.goodput_rps or 0.0
    if promise <= 0.0:
        return 0.0  # serves nothing within the SLO: nothing to simulate
    duration = duration or run_seconds(promise)
    high = min(2.0 * promise, 1.05 * max(plan.summary.throughput_rps, promise))
    low = 0.5 * promise
    budget.spend(cluster, low, duration)
    if simulate_rate(plan, cluster, low, duration=duration, seed=seed).slo_attainment < cluster.slo.attainment:
        low, high = 0.0, low
    for _ in range(GOODPUT_STEPS):
        mid = (low + high) / 2
        if not budget.spend(cluster, mid, duration):
            break
        if simulate_rate(plan, cluster, mid, duration=duration, seed=seed).slo_attainment >= cluster.slo.attainment:
            low = mid
        else:
            high = mid
    return low


def _model_rate(plan: Plan) -> float:
    """What the cost model says the verifier would measure: goodput with an SLO, else throughput."""
    summary = plan.summary
    return summary.goodput_rps if summary.goodput_rps is not None else summary.throughput_rps


def _baseline_plans(
    cluster: Cluster, roles: RolesMode, seed: int, time_limit: float, solver: SolverInfo
) -> list[tuple[str, Plan]]:
    """The reference planners' plans for this cluster, re-evaluated as ours (our solver record)."""
    out = []
    for name in BASELINES_FOR[roles]:
        try:
            theirs = BASELINES[name](cluster, seed=seed, time_limit=time_limit)
            out.append((f"{name}-style", evaluate(theirs.model_copy(update={"solver": solver}), cluster)))
        except (InfeasibleError, PlanError):
            continue  # that planner has no plan here, or none our connector can run
    return out


def solve_verified(
    cluster: Cluster,
    *,
    seed: int = 0,
    time_limit: float = 60.0,
    connector: Connector = "nixl",
    objective: Objective | None = None,
    roles: RolesMode = "mixed",
    verify: bool | None = None,
    progress: Progress | None = None,
    duration: float | None = None,
    promising: float = PROMISING,
) -> Plan:
    """The scheduler's plan, verified by simulation when `verify` (default: `verifies_by_default`), with
    runs of `duration` simulated seconds (default: `run_seconds`); candidates below `promising` × the best
    model rate are not simulated (0: simulate every one)."""
    verify = verifies_by_default(cluster, roles) if verify is None else verify
    common = {"seed": seed, "connector": connector, "objective": objective, "roles": roles, "progress": progress}
    result = search(cluster, time_limit=time_limit, alternatives=ALTERNATIVES if verify else 0, **common)
    best = plan_from_search(cluster, result)
    if not verify:
        return best
    solver = solver_info(result.facts)
    candidates = [("search", best)]
    candidates += [
        (f"search alternative {i}", assemble(cluster, alt, solver)) for i, alt in enumerate(result.alternatives, 1)
    ]
    candidates += _baseline_plans(cluster, roles, seed, time_limit, solver)
    best_model = max(_model_rate(plan) for _, plan in candidates)
    budget = WorkBudget()
    scored = [
        (simulated_rate(plan, cluster, seed=seed, duration=duration, budget=budget), i)
        for i, (_, plan) in enumerate(candidates)
        if i == 0 or (_model_rate(plan) >= promising * best_model and budget.left > 0.0)
    ]
    rate, index = max(scored, key=lambda s: (s[0], -s[1]))
    name, chosen = candidates[index]
    record = Verification(
        metric="goodput" if cluster.slo is not None else "throughput",
        candidates=len(scored),
        chosen=name,
        simulated_rps=rate,
        search_best_rps=scored[0][0],
        duration_s=duration or run_seconds(_model_rate(chosen)),
    )
    return chosen.model_copy(update={"solver": chosen.solver.model_copy(update={"verification": record})})
