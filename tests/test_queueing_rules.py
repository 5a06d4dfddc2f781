"""planner.costs.queueing against hand-computed textbook values: Pollaczek–Khinchine, the wait quantile's two
regimes, the Poisson quantile (scipy as the oracle), Erlang C and the bisection for the largest rate.

Why: every SLO-bound capacity is one of these formulas under a bisection; an off-by-one factor in any of them
moves every goodput a plan prints, and the simulator comparison in test_slo_capacity.py is too coarse to see it.
"""

from __future__ import annotations

import math

import pytest
from scipy.stats import poisson

from planner.costs.queueing import erlang_c, largest_rate, mg1_mean_wait, mg1_wait_quantile, poisson_quantile


@pytest.mark.parametrize(("rate", "service"), [(0.25, 2.0), (3.0, 0.1), (0.9, 1.0)])
def test_mg1_mean_wait_with_exponential_service_is_the_mm1_wait(rate, service):
    # M/M/1 (scv 1): E[W] = ρ / (μ − λ) with μ = 1/s, the textbook closed form
    mu = 1.0 / service
    assert mg1_mean_wait(rate, service, 1.0) == pytest.approx((rate / mu) / (mu - rate), rel=1e-12)


def test_mg1_mean_wait_with_deterministic_service_is_half_the_mm1_wait():
    # M/D/1: E[W] = ρ·s / (2(1 − ρ)); ρ = 0.25 · 2 = 0.5 → 0.5 · 2 / 1 = 1.0
    assert mg1_mean_wait(0.25, 2.0, 0.0) == pytest.approx(1.0, rel=1e-12)
    # scv 3 doubles the M/M/1 wait: 0.5 · 2 · 4 / 1 = 4.0
    assert mg1_mean_wait(0.25, 2.0, 3.0) == pytest.approx(4.0, rel=1e-12)


def test_mg1_mean_wait_is_infinite_from_full_utilisation_on():
    assert mg1_mean_wait(0.5, 2.0, 0.0) == math.inf  # ρ = 1 exactly
    assert mg1_mean_wait(1.0, 2.0, 0.0) == math.inf
    assert mg1_mean_wait(0.499, 2.0, 0.0) < math.inf


def test_the_wait_quantile_in_heavy_traffic_is_the_exponential_tail():
    # ρ = 0.9, s = 1, scv 0: E[W] = 0.9 / 0.2 = 4.5; P(W > t) = ρ e^{−tρ/E[W]} = 0.05 → t = 5 ln 18
    assert mg1_wait_quantile(0.9, 1.0, 0.0, 0.05) == pytest.approx(5.0 * math.log(18.0), rel=1e-12)
    # the same utilisation with s = 2 (rate halved): every time doubles
    assert mg1_wait_quantile(0.45, 2.0, 0.0, 0.05) == pytest.approx(10.0 * math.log(18.0), rel=1e-12)


def test_the_wait_quantile_in_light_traffic_is_the_exact_md1_residual():
    # ρ = 0.2, miss 0.1, s = 1: tail 0.125/0.2 · ln 2 ≈ 0.43 is below the exact M/D/1 value
    # P(W ≤ t) = (1 − ρ) e^{λt} = 0.9 → t = ln(0.9/0.8) / 0.2 ≈ 0.589 (< s, so the min does not bind)
    assert mg1_wait_quantile(0.2, 1.0, 0.0, 0.1) == pytest.approx(math.log(0.9 / 0.8) / 0.2, rel=1e-12)
    # with s = 4 and λ = 0.05 (same ρ) the time scales by 4
    assert mg1_wait_quantile(0.05, 4.0, 0.0, 0.1) == pytest.approx(4 * math.log(0.9 / 0.8) / 0.2, rel=1e-12)


def test_the_wait_quantile_is_zero_while_few_enough_requests_wait_and_infinite_at_saturation():
    # P(W > 0) = ρ: at ρ ≤ miss the quantile is 0, just above it positive
    assert mg1_wait_quantile(0.05, 1.0, 0.0, 0.05) == 0.0
    assert mg1_wait_quantile(0.04, 1.0, 1.0, 0.05) == 0.0
    assert mg1_wait_quantile(0.06, 1.0, 0.0, 0.05) > 0.0
    assert mg1_wait_quantile(0.0, 1.0, 0.0, 0.05) == 0.0
    assert mg1_wait_quantile(0.0, 1.0, 0.0, 0.0) == 0.0  # nobody arrives: nobody waits, even with no miss allowed


def test_with_no_miss_allowed_any_load_waits_unboundedly():
    # attainment 1: the 100 % quantile of a Poisson queue's wait has no finite bound (this used to divide by zero)
    assert mg1_wait_quantile(0.01, 1.0, 0.0, 0.0) == math.inf
    assert mg1_wait_quantile(0.5, 1.0, 1.0, 0.0) == math.inf
    assert mg1_wait_quantile(1.0, 1.0, 0.0, 0.05) == math.inf  # ρ = 1 exactly
    assert mg1_wait_quantile(0.5, 2.0, 0.0, 0.5) == math.inf


@pytest.mark.parametrize("mean", [0.3, 1.0, 2.5, 7.0, 40.0])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_poisson_quantile_matches_scipy(mean, q):
    assert poisson_quantile(mean, q) == int(poisson.ppf(q, mean))


def test_poisson_quantile_edges():
    assert poisson_quantile(0.0, 1.0) == 0  # P(N = 0) = 1 already meets q = 1
    assert poisson_quantile(2.0, math.exp(-2.0)) == 0  # q exactly P(N = 0)
    assert poisson_quantile(2.0, 3 * math.exp(-2.0)) == 1  # q exactly P(N ≤ 1) = e^{-2}(1 + 2)
    # a quantile no count reaches ends the search after 10 000 terms instead of looping forever
    assert poisson_quantile(3.0, 2.0) == 10_000


def _erlang_b(c: int, a: float) -> float:
    """Erlang B from its textbook sum, a^c/c! / Σ_{k≤c} a^k/k!."""
    return (a**c / math.factorial(c)) / sum(a**k / math.factorial(k) for k in range(c + 1))


@pytest.mark.parametrize(("c", "a"), [(1, 0.3), (3, 2.9), (5, 1.0), (10, 9.5)])
def test_erlang_c_is_erlang_b_turned_into_a_wait(c, a):
    # C = c·B / (c − a(1 − B)), with B from the sum (not the recursion the code uses)
    b = _erlang_b(c, a)
    assert erlang_c(c, a) == pytest.approx(c * b / (c - a * (1 - b)), rel=1e-12)


def test_erlang_c_with_one_slot_is_the_utilisation():
    # M/M/1: P(wait) = ρ
    assert erlang_c(1, 0.37) == pytest.approx(0.37, rel=1e-12)


def test_erlang_c_boundaries():
    assert erlang_c(3, 0.0) == 0.0
    assert erlang_c(3, 3.0) == 1.0 and erlang_c(3, 3.5) == 1.0
    assert erlang_c(3, 2.999) < 1.0


def test_largest_rate_bisects_to_the_threshold_within_its_precision():
    calls: list[float] = []

    def ok(rate: float) -> bool:
        calls.append(rate)
        return rate <= 0.7

    found = largest_rate(ok, 1.0)
    assert found <= 0.7 and found == pytest.approx(0.7, abs=2e-8)  # 26 halvings of [0, 1]: ≤ 1.5e-8 short
    assert ok(found)
    assert calls[0] == 1.0 and calls[1] == 0.5 and calls[2] == 0.75  # tries the top first, then halves


def test_largest_rate_stops_at_its_documented_precision():
    # threshold just below the top: after k halvings of [0, 1] the lower end is 1 − 2^-k, so the result
    # shows how many halvings were made (2^-26 ≈ 1.5e-8 relative, the module's promise)
    assert largest_rate(lambda r: r <= 1.0 - 2.0**-40, 1.0) == 1.0 - 2.0**-26


def test_largest_rate_of_an_empty_or_always_feasible_range():
    seen: list[float] = []
    assert largest_rate(lambda r: seen.append(r) or True, 0.0) == 0.0
    assert seen == []  # an empty range is not even tried
    assert largest_rate(lambda r: True, 4.0) == 4.0
    assert largest_rate(lambda r: r < 0, 4.0) == 0.0
