"""Runs built on the simulator: a fixed Poisson rate, a replayed trace, saturation throughput, goodput."""

from __future__ import annotations

import math

import numpy as np

from planner.inputs.problem import Cluster
from planner.plans.schema import Plan
from planner.sim.arrivals import MAX_REQUESTS, Arrivals, check_requests, poisson
from planner.sim.engine import Simulation
from planner.sim.metrics import SimResult, Slo

# Used when the cluster file sets no SLO (the values large-1024.yaml uses for a 70B model).
DEFAULT_TTFT_S = 5.0
DEFAULT_TPOT_S = 0.2
GOODPUT_ATTAINMENT = 0.9
DEFAULT_DURATION_S = 300.0
DEFAULT_LOAD = 0.8  # offered load as a fraction of the plan's max-flow rate when no rate is given


def default_slo(cluster: Cluster) -> Slo:
    return Slo(cluster.slo_ttft or DEFAULT_TTFT_S, cluster.slo_tpot or DEFAULT_TPOT_S)


def default_rate(plan: Plan) -> float:
    """The Poisson rate `hexplan simulate` offers when none is given: 80 % of the plan's max-flow."""
    return DEFAULT_LOAD * plan.summary.throughput_rps


def simulate_replay(
    plan: Plan, cluster: Cluster, arrivals: Arrivals, *, seed: int, slo: Slo | None = None
) -> SimResult:
    """Replayed arrivals (a trace), measured from the first to the last arrival, every request run to its end."""
    return Simulation(
        plan,
        cluster,
        arrivals,
        slo=slo or default_slo(cluster),
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
    slo: Slo | None = None,
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
        slo=slo or default_slo(cluster),
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
    slo: Slo | None = None,
    iterations: int = 7,
    high: float | None = None,
    max_requests: int = MAX_REQUESTS,
) -> tuple[float, SimResult | None]:
    """Highest Poisson rate at which ≥ 90 % of requests meet the SLO, by bisection on [0, high].

    high defaults to 1.2 × the plan's max-flow figure. Attainment falls with load (up to
    sampling noise), so bisection finds the knee in `iterations` runs. Returns (rate, its run);
    (0, None) when even the lowest rate tried misses the SLO.
    """
    low, best = 0.0, None
    high = high or 1.2 * max(plan.summary.throughput_rps, 1e-6)
    check_requests(high * duration, max_requests, f"a sweep up to {high:g} req/s for {duration:g} s (--duration)")
    for _ in range(iterations):
        mid = (low + high) / 2
        result = simulate_rate(plan, cluster, mid, duration=duration, seed=seed, slo=slo, max_requests=max_requests)
        if result.slo_attainment >= GOODPUT_ATTAINMENT:
            low, best = mid, result
        else:
            high = mid
    return low, best
