"""Runs built on the simulator: a fixed Poisson rate, a replayed trace, saturation throughput, goodput.

The SLO of a run is the cluster's (`cluster.slo`): callers that read a plan set it from the plan first
(planner.plans.slo.with_plan_slo), so there is no default SLO here. Without one, attainment and goodput
are not defined.
"""

from __future__ import annotations

import math

import numpy as np

from planner.errors import InputError
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan
from planner.sim.arrivals import MAX_REQUESTS, Arrivals, check_requests, poisson
from planner.sim.engine import Simulation
from planner.sim.metrics import SimResult

DEFAULT_DURATION_S = 300.0
DEFAULT_LOAD = 0.8  # offered load as a fraction of the plan's max-flow rate when no rate is given
GOODPUT_STEPS = 7  # bisection runs of `goodput`
NO_SLO = "goodput is not defined without an SLO: give one (workload.slo in the cluster file, or --slo-ttft/--slo-tpot)."


def default_rate(plan: Plan) -> float:
    """The Poisson rate `hexplan simulate` offers when none is given: 80 % of the plan's max-flow."""
    return DEFAULT_LOAD * plan.summary.throughput_rps


def simulate_replay(plan: Plan, cluster: Cluster, arrivals: Arrivals, *, seed: int) -> SimResult:
    """Replayed arrivals (a trace), measured from the first to the last arrival, every request run to its end."""
    return Simulation(
        plan,
        cluster,
        arrivals,
        slo=cluster.slo,
        warmup=0.0,
        duration=float(arrivals.time[-1]) + 1e-9,
        drain=math.inf,
        seed=seed,
    ).run()


def simulate_rate(
    plan: Plan,
    cluster: Cluster,
    rate: float,
    *,
    duration: float,
    seed: int,
    warmup: float | None = None,
    drain: float | None = None,
    max_requests: int = MAX_REQUESTS,
) -> SimResult:
    """Poisson arrivals at `rate` req/s for `duration` s; the first quarter is warm-up unless given.

    `drain` (default: duration) lets requests that arrived in the window finish before the clock stops.
    Raises InputError when rate × duration exceeds `max_requests`.
    """
    arrivals = poisson(cluster.workload, rate, duration, np.random.default_rng(seed), max_requests=max_requests)
    return Simulation(
        plan,
        cluster,
        arrivals,
        slo=cluster.slo,
        warmup=duration / 4 if warmup is None else warmup,
        duration=duration,
        drain=duration if drain is None else drain,
        seed=seed,
    ).run()


def saturation(
    plan: Plan, cluster: Cluster, *, duration: float, seed: int, overload: float = 1.5, max_requests: int = MAX_REQUESTS
) -> SimResult:
    """Served rate under an offered load `overload` × the plan's max-flow figure (no drain needed)."""
    rate = overload * max(plan.summary.throughput_rps, 1e-6)
    return simulate_rate(plan, cluster, rate, duration=duration, seed=seed, drain=0.0, max_requests=max_requests)


def goodput(
    plan: Plan,
    cluster: Cluster,
    *,
    duration: float,
    seed: int,
    iterations: int = GOODPUT_STEPS,
    high: float | None = None,
    max_requests: int = MAX_REQUESTS,
) -> tuple[float, SimResult | None]:
    """Highest Poisson rate at which ≥ the SLO's attainment of requests meet it, by bisection on [0, high].

    high defaults to 1.2 × the plan's max-flow figure. Attainment falls with load (up to
    sampling noise), so bisection finds the knee in `iterations` runs. Returns (rate, its run);
    (0, None) when even the lowest rate tried misses the SLO. InputError without an SLO.
    """
    if cluster.slo is None:
        raise InputError(NO_SLO)
    low, best = 0.0, None
    high = high or 1.2 * max(plan.summary.throughput_rps, 1e-6)
    check_requests(high * duration, max_requests, f"a sweep up to {high:g} req/s for {duration:g} s (--duration)")
    for _ in range(iterations):
        mid = (low + high) / 2
        result = simulate_rate(plan, cluster, mid, duration=duration, seed=seed, max_requests=max_requests)
        if result.slo_attainment >= cluster.slo.attainment:
            low, best = mid, result
        else:
            high = mid
    return low, best


def deadline_scale(result: SimResult, attainment: float) -> float:
    """The smallest factor s such that `attainment` of the run's sampled requests meet s × its SLO
    (TTFT ≤ s·ttft and TPOT ≤ s·tpot): "the deadline needed" for that attainment, as a multiple of the
    SLO. A dropped or unfinished request never meets any deadline (inf)."""
    if result.slo is None:
        raise InputError(NO_SLO)
    slo = result.slo
    scales = []
    for r in result.requests:
        if r.arrival < result.warmup_s or r.arrival >= result.window_end_s:
            continue
        if r.finish < 0:
            scales.append(math.inf)
            continue
        worst = 0.0
        if slo.ttft is not None:
            worst = max(worst, (r.first_token - r.arrival) / slo.ttft)
        if slo.tpot is not None and r.output > 1:
            worst = max(worst, (r.finish - r.first_token) / (r.output - 1) / slo.tpot)
        scales.append(worst)
    if not scales:
        return math.nan
    return float(np.quantile(np.asarray(scales), attainment, method="higher"))
