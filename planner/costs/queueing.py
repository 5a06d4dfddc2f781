"""Queueing bounds that turn a replica's service times into the request rate it sustains within an SLO.

Why here: the cost model says how long a batch or a step takes; an SLO is about latency *under load*,
which also depends on how long requests wait. These are the textbook formulas, as pure functions of
rates and times (seconds, requests/s), so every role's capacity under an SLO uses the same maths.

- M/G/1 waiting time (FCFS, one server, Poisson arrivals at rate λ, service S with mean s and squared
  coefficient of variation c² = Var S / s²): utilisation ρ = λs, Pollaczek–Khinchine mean wait
  E[W] = ρ·s·(1 + c²) / (2(1 − ρ)). A request waits at all with probability ρ, and in heavy traffic the
  wait of those who do is exponential with mean E[W]/ρ, so P(W > t) ≈ ρ·exp(−t·ρ/E[W]) and the
  (1 − miss)-quantile is W_q = (E[W]/ρ)·ln(ρ/miss) (0 when ρ ≤ miss). In light traffic the wait is the
  residual of one service, not exponential: for deterministic service P(W ≤ t) = (1 − ρ)·e^{λt} exactly
  for t < s, so W_q is also at least min(s, ln((1 − miss)/(1 − ρ))/λ). For deterministic service the
  larger of the two is an upper bound of the exact quantile at every ρ < 1 (the exponential tail decays
  more slowly than the exact Cramér–Lundberg one); tests/test_slo_capacity.py checks both against
  Erlang's exact M/D/1 formula and against the simulator for batch servers.
- Erlang C: with c parallel slots (a decode engine's max_num_seqs) and offered load a = λ·(mean holding
  time), the probability that an arrival finds every slot busy, via the Erlang B recursion
  B(0) = 1, B(k) = a·B(k−1) / (k + a·B(k−1)), C = c·B / (c − a·(1 − B)) (numerically stable for any c).
- `largest_rate`: bisection for the highest rate meeting a condition that holds at low rates and fails
  past some threshold (every bound above is monotone in λ).
"""

from __future__ import annotations

import math
from collections.abc import Callable

BISECTION_STEPS = 26  # relative precision 2^-26 ≈ 1.5e-8 of the bracket: below any figure a plan prints


def mg1_mean_wait(rate: float, mean_service: float, scv: float) -> float:
    """Pollaczek–Khinchine mean waiting time of M/G/1; inf when ρ ≥ 1."""
    rho = rate * mean_service
    return math.inf if rho >= 1.0 else rho * mean_service * (1.0 + scv) / (2.0 * (1.0 - rho))


def mg1_wait_quantile(rate: float, mean_service: float, scv: float, miss: float) -> float:
    """(1 − miss)-quantile of the M/G/1 FCFS waiting time (module docstring); inf when ρ ≥ 1."""
    rho = rate * mean_service
    if rho >= 1.0:
        return math.inf
    if rho <= miss:
        return 0.0  # no more than `miss` of the requests wait at all (ρ = 0 included)
    if miss <= 0.0:
        return math.inf  # every request (attainment 1): a wait that is unbounded under Poisson arrivals
    tail = mg1_mean_wait(rate, mean_service, scv) / rho * math.log(rho / miss)
    light = min(mean_service, math.log((1.0 - miss) / (1.0 - rho)) / rate)  # exact M/D/1 below one service
    return max(tail, light)


def poisson_quantile(mean: float, q: float) -> int:
    """The smallest n with P(Poisson(mean) ≤ n) ≥ q."""
    term = cumulative = math.exp(-mean)
    n = 0
    while cumulative < q and n < 10_000:
        n += 1
        term *= mean / n
        cumulative += term
    return n


def erlang_c(servers: int, offered: float) -> float:
    """Probability that a Poisson arrival waits in an M/M/c queue with `servers` slots and offered load
    `offered` (= λ × mean holding time); 1 when the load reaches the slots."""
    if offered <= 0.0:
        return 0.0
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return servers * blocking / (servers - offered * (1.0 - blocking))


def largest_rate(ok: Callable[[float], bool], high: float) -> float:
    """The highest rate in [0, high] at which `ok` holds, assuming it holds below a threshold and fails above."""
    if high <= 0.0:
        return 0.0
    if ok(high):
        return high
    low = 0.0
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        if ok(mid):
            low = mid
        else:
            high = mid
    return low
