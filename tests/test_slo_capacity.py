"""Capacity under the SLO (issue 12, point 2): the queueing bounds, each replica's rate within the SLO,
and the prefill TTFT bound checked against the simulator over a grid of loads."""

from __future__ import annotations

import dataclasses
import decimal
import math

import numpy as np
import pytest
from conftest import EXAMPLES

from planner.costs.queueing import erlang_c, largest_rate, mg1_wait_quantile
from planner.costs.replica import decode_perf, prefill_perf
from planner.costs.slo import decode_goodput, kv_reserve, miss_budget, prefill_goodput, prefill_ttft_quantile
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Slo
from planner.inputs.workload import Lengths, Workload
from planner.plans.assemble import assemble
from planner.plans.schema import SolverInfo
from planner.scheduler.assess import assess
from planner.scheduler.layouts import best_assessment
from planner.sim.sweeps import simulate_rate


def _erlang_c_by_definition(c: int, a: float) -> float:
    """P(wait) in M/M/c from the textbook sum (the independent oracle for the recursion)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.5), (8, 6.0), (20, 15.0), (40, 39.0)])
def test_erlang_c_matches_the_textbook_formula(c, a):
    assert erlang_c(c, a) == pytest.approx(_erlang_c_by_definition(c, a), rel=1e-9)


def test_erlang_c_edges():
    assert erlang_c(4, 0.0) == 0.0 and erlang_c(4, 4.0) == 1.0 and erlang_c(4, 9.0) == 1.0
    assert 0.0 < erlang_c(512, 480.0) < 1.0  # stable for engine-sized batches


def _md1_wait_cdf(t: float, rate: float, s: float) -> float:
    """Exact M/D/1 FCFS waiting-time CDF (Erlang's formula), the oracle for the tail bound. The sum
    alternates with terms up to e^(λt), so it is summed in 80-digit decimals."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        rate_d, s_d, t_d = decimal.Decimal(rate), decimal.Decimal(s), decimal.Decimal(t)
        total = decimal.Decimal(0)
        for k in range(int(t / s) + 1):
            x = rate_d * (k * s_d - t_d)
            total += x**k / math.factorial(k) * (-x).exp()
        return float((1 - rate_d * s_d) * total)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.7, 0.85, 0.95])
@pytest.mark.parametrize("miss", [0.05, 0.1])
def test_mg1_quantile_bounds_the_exact_md1_quantile(rho, miss):
    s = 1.0
    q = mg1_wait_quantile(rho / s, s, 0.0, miss)
    assert _md1_wait_cdf(q, rho / s, s) >= 1 - miss - 1e-9  # the bound is an upper bound of the quantile
    assert q <= 3.0 * max(s, _exact_md1_quantile(rho, miss)), "…and not a wild one"


def _exact_md1_quantile(rho: float, miss: float) -> float:
    """The smallest t with P(W ≤ t) ≥ 1 − miss (the CDF rises with t, so bisect where it is still below)."""
    return largest_rate(lambda t: _md1_wait_cdf(t, rho, 1.0) < 1 - miss, 60.0)


def test_mg1_quantile_edges():
    assert mg1_wait_quantile(1.0, 1.0, 0.0, 0.05) == math.inf
    assert mg1_wait_quantile(0.01, 1.0, 0.0, 0.05) == 0.0  # ρ ≤ miss: most requests never wait
    assert mg1_wait_quantile(0.5, 1.0, 1.0, 0.05) > mg1_wait_quantile(0.5, 1.0, 0.0, 0.05)  # variance hurts


def test_largest_rate_finds_the_threshold():
    assert largest_rate(lambda r: r <= 3.25, 10.0) == pytest.approx(3.25, rel=1e-6)
    assert largest_rate(lambda r: True, 10.0) == 10.0
    assert largest_rate(lambda r: False, 10.0) == pytest.approx(0.0, abs=1e-9)


def test_miss_budget_splits_between_the_slos_that_are_set():
    assert miss_budget(Slo(1.0, 0.1, 0.9)) == pytest.approx((0.05, 0.05))
    assert miss_budget(Slo(1.0, None, 0.9)) == pytest.approx((0.1, 0.0))
    assert miss_budget(Slo(None, 0.1, 0.8)) == pytest.approx((0.0, 0.2))


@pytest.fixture(scope="module")
def h100(catalog):
    return load_cluster(EXAMPLES / "paper-h100-homogeneous.yaml", catalog)


def _slo(cluster, ttft, tpot, attainment=0.9):
    return dataclasses.replace(cluster, slo=Slo(ttft, tpot, attainment))


def test_goodput_is_below_capacity_and_grows_with_the_slo(h100):
    gpus = [f"h100-0/{i}" for i in range(4)]
    rates = []
    for ttft in (0.8, 1.5, 3.0, 10.0):
        a = best_assessment(_slo(h100, ttft, 0.1), gpus, "prefill", True)
        assert a is not None and 0 < a.goodput_rps <= a.capacity_rps
        rates.append(a.goodput_rps)
    assert rates == sorted(rates) and rates[0] < rates[-1]


def test_an_slo_tighter_than_one_unloaded_prompt_serves_nothing(h100):
    cluster = _slo(h100, 0.2, None)
    layout = best_assessment(h100, [f"h100-0/{i}" for i in range(4)], "prefill", True).layout
    perf = prefill_perf(cluster, layout)
    assert perf.latency_s > 0.2
    assert prefill_goodput(cluster, layout, perf, cluster.slo) == pytest.approx(0.0, abs=1e-6)


def test_decode_goodput_keeps_few_requests_waiting_for_a_slot(h100):
    cluster = _slo(h100, None, 0.05)
    layout = best_assessment(cluster, ["h100-0/4", "h100-0/5"], "decode", True).layout
    perf = decode_perf(cluster, layout, 0.05)
    assert perf.tpot_s <= 0.05
    rate = decode_goodput(cluster, perf, cluster.slo)
    hold = cluster.workload.decode_tokens * perf.tpot_s
    assert erlang_c(perf.batch, rate * hold) <= 0.1 + 1e-9 < erlang_c(perf.batch, 1.01 * rate * hold)


def test_colocated_tpot_slo_bounds_every_step_and_caps_the_token_budget(catalog):
    tiny = load_cluster(EXAMPLES / "tiny.yaml", catalog)
    loose, tight = _slo(tiny, 2.0, 1.0), _slo(tiny, 2.0, 0.03)
    group = ["a100-0/0", "a100-0/1"]
    a_loose, a_tight = (best_assessment(c, group, "colocated", True) for c in (loose, tight))
    assert a_tight.latency_s <= 0.03  # the longest step: a full chunk beside the batch
    assert a_tight.engine.max_num_batched_tokens < a_loose.engine.max_num_batched_tokens
    assert a_tight.goodput_rps < a_loose.goodput_rps


# --- the prefill TTFT bound against the simulator: one prefill replica, plenty of decode capacity behind it


def _prefill_bench(cluster, prefill_gpus, decode_groups, prompt: Lengths):
    workload = Workload(prompt, Lengths("fixed", 32.0))
    cluster = dataclasses.replace(cluster, workload=workload, slo=Slo(100.0, None, 0.9))
    layout = best_assessment(cluster, prefill_gpus, "prefill", True).layout
    replicas = [assess(cluster, "prefill", layout)] + [
        best_assessment(cluster, g, "decode", True) for g in decode_groups
    ]
    return cluster, layout, assemble(cluster, replicas, SolverInfo(version="test"))


@pytest.mark.parametrize(
    ("example", "prefill", "decodes", "prompt"),
    [
        ("paper-h100-homogeneous", "h100-0/0-3", ["h100-0/4-5", "h100-0/6-7"], Lengths("lognormal", 200.0, cv=1.0)),
        ("tiny", "a100-0/0-0", ["l40-0/0-1", "l40-0/2-3", "a100-0/2-3"], Lengths("lognormal", 100.0, cv=0.5)),
        ("paper-hetero-1", "a6000-0/0-3", ["h100-0/0-1", "a100-0/0-1"], Lengths("fixed", 1024.0)),
    ],
    ids=["70b-short-prompts", "8b-short-prompts", "70b-4-stage-pipeline"],
)
def test_prefill_ttft_bound_holds_against_the_simulator(catalog, example, prefill, decodes, prompt):
    """Over loads 20–80 % of capacity (the most a prefill replica is planned at: slo.PREFILL_MAX_LOAD) the
    analytic 95th-percentile TTFT (+ KV reserve) is at least the simulated one (within 10 % sampling noise)
    and at most 2.5× it: conservative, not useless."""

    def gpus(spec: str) -> list[str]:
        node, _, span = spec.partition("/")
        low, high = map(int, span.split("-"))
        return [f"{node}/{i}" for i in range(low, high + 1)]

    base = load_cluster(EXAMPLES / f"{example}.yaml", catalog)
    cluster, layout, plan = _prefill_bench(base, gpus(prefill), [gpus(d) for d in decodes], prompt)
    engine = next(r.engine for r in plan.replicas if r.role == "prefill")
    perf = prefill_perf(cluster, layout, engine.max_num_batched_tokens)  # the batches the simulator forms
    for load in (0.2, 0.5, 0.65, 0.8):
        rate = load * perf.capacity_rps
        run = simulate_rate(plan, cluster, rate, duration=400.0, seed=3)
        ttft = np.array([r.first_token - r.arrival for r in run.requests if r.arrival >= 100.0 and r.first_token >= 0])
        simulated = float(np.quantile(ttft, 0.95))
        bound = prefill_ttft_quantile(cluster, layout, perf, rate, 0.05) + kv_reserve(cluster, layout)
        assert 0.9 * simulated <= bound <= 2.5 * simulated, (load, simulated, bound)
