"""planner.costs.slo rule by rule: the prompt variability, the KV-transfer reserve, the TTFT quantile of a prefill
engine worked out by hand on made-up pipeline figures, the goodput caps with and without each SLO, the choice of
token budget, and decode goodput against an Erlang C solved independently (scipy root finding on the textbook sum).

Why: test_slo_capacity.py holds the TTFT bound against the simulator, which is coarse by design (the bound is
conservative); these pin each term of the bound so that a wrong sign or a dropped term cannot hide in the margin.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from builders import cluster, gbps, hf_config, layout, node, toy_gpu
from scipy.optimize import brentq
from scipy.stats import poisson

from planner.costs.queueing import mg1_wait_quantile
from planner.costs.replica import DecodePerf, prefill_perf, prefill_pipeline
from planner.costs.slo import (
    _PrefillQueue,
    decode_goodput,
    kv_reserve,
    prefill_goodput,
    prefill_ttft_quantile,
    prefill_within_slo,
    prompt_scv,
)
from planner.inputs.problem import Slo
from planner.inputs.workload import Lengths, Workload

LAYERS, HIDDEN, HEADS, KV_HEADS = 4, 256, 4, 2  # head dim 64


def toy(*, prompt: int = 1000, output: int = 11, nic_b: float = 200, memory: str = "10GB"):
    model = hf_config(layers=LAYERS, hidden=HIDDEN, heads=HEADS, kv_heads=KV_HEADS, ffn=512, vocab=1000)
    gpu = toy_gpu(memory=memory)
    return cluster(
        node("a", gpu, 2, nic=100), node("b", gpu, 2, nic=nic_b), node("c", gpu, 1, nic=1),
        model=model, prompt=prompt, output=output, network=8, latency="1ms",
    )  # fmt: skip


def with_prompt(c, prompt: Lengths, slo: Slo | None = None):
    return dataclasses.replace(c, workload=Workload(prompt, Lengths("fixed", 11.0)), slo=slo)


# ----------------------------------------------------------------------------- workload and reserve


def test_prompt_scv_is_the_squared_coefficient_of_variation():
    c = toy()
    assert prompt_scv(c) == 0.0  # fixed prompts
    assert prompt_scv(with_prompt(c, Lengths("exponential", 500.0))) == pytest.approx(1.0)
    # uniform on [0, 2m]: variance (2m)²/12 = m²/3, so scv 1/3
    assert prompt_scv(with_prompt(c, Lengths("uniform", 500.0, low=0.0, high=1000.0))) == pytest.approx(1 / 3)
    assert prompt_scv(with_prompt(c, Lengths("lognormal", 500.0, cv=0.5))) == pytest.approx(0.25)


def test_kv_reserve_ships_a_mean_prompts_kv_through_the_replicas_slowest_nic():
    c = toy(nic_b=25)
    kv_bytes = 1000 * LAYERS * 2 * KV_HEADS * 64 * 2  # prompt × layers × (K, V) × kv heads × head dim × fp16
    both = layout(LAYERS, ["a/0"], ["b/0"])
    assert kv_reserve(c, both) == pytest.approx(kv_bytes / gbps(25), rel=1e-12)
    assert kv_reserve(c, layout(LAYERS, ["a/0"])) == pytest.approx(kv_bytes / gbps(100), rel=1e-12)
    # node c's 1 Gbit/s NIC is not the replica's: it does not count


# ----------------------------------------------------------------------------- the TTFT quantile by hand


def queue(n: int = 8, period_n: float = 4.0, scv: float = 0.0, long_prompt: float = 1.0) -> _PrefillQueue:
    """A made-up engine: a batch of 1 prompt takes 1 s (latency 1 s), a full batch of n takes `period_n`
    (latency 2 s); in between linear."""
    return _PrefillQueue(n, 1.0, 1.0, period_n, 2.0, scv, long_prompt)


def test_batch_figures_are_linear_between_one_and_a_full_batch():
    q = queue()
    assert q.at(1.0) == (1.0, 1.0)
    assert q.at(8.0) == (4.0, 2.0)
    assert q.at(4.5) == pytest.approx((2.5, 1.5))
    single = _PrefillQueue(1, 0.3, 0.5, 0.3, 0.5, 0.0, 1.0)
    assert single.at(1.0) == (0.3, 0.5) and single.at(3.0) == (0.3, 0.5)  # batches of one: no slope


def test_ttft_quantile_with_batches_of_one_is_the_wait_plus_one_latency():
    # n = 1: service = the period, no batch-mates, no overhead beyond the M/G/1 work
    q = _PrefillQueue(1, 0.5, 0.7, 0.5, 0.7, 1.0, 1.0)
    assert q.ttft_quantile(1.2, 0.1) == pytest.approx(mg1_wait_quantile(1.2, 0.5, 1.0, 0.1) + 0.7, rel=1e-12)


def test_ttft_quantile_by_hand_at_light_load():
    # rate 0.8, n = 8, period(k) = 1 + 3(k − 1)/7, service 4/8 = 0.5, ρ = 0.4, miss 0.1.
    # batch: 0.8 · period(1) < 1, so k = 1; overhead = period(1) − 1 · 0.5 = 0.5.
    # E[W] = 0.4 · 0.5 / (2 · 0.6) = 1/6. Batch-mates: arrivals 0.8 · (period(1) + 1/6) = 0.933, whose Poisson
    # 90 % quantile is 2; then 0.8 · (period(3) + 1/6) = 1.619, quantile 3. Latency of 3 + 1 prompts: 1 + 3/7.
    expected = mg1_wait_quantile(0.8, 0.5, 0.0, 0.1) + 0.5 + (1.0 + 3.0 / 7.0)
    assert queue().ttft_quantile(0.8, 0.1) == pytest.approx(expected, rel=1e-12)


def test_ttft_quantile_by_hand_when_batches_grow_with_load():
    # n = 4, period(k) = 1 + (k − 1)/3, latency 1.2 → 2.4, service 0.5, rate 1.5 (ρ = 0.75), miss 0.1.
    # k = 1.5 · period(k) has the fixed point k = 2; eight steps from k = 1 halve the distance each time:
    # k = 2 − 2⁻⁸, so the overhead period(k) − 0.5 k = 1/3 + 2⁻⁸/6.
    # batch-mates: arrivals 1.5 · (period(2) + E[W] = 0.75) = 3.1 → quantile 5, capped at n − 1 = 3: latency(4).
    q = _PrefillQueue(4, 1.0, 1.2, 2.0, 2.4, 0.0, 1.0)
    expected = mg1_wait_quantile(1.5, 0.5, 0.0, 0.1) + (1.0 / 3.0 + 2.0**-8 / 6.0) + 2.4
    assert q.ttft_quantile(1.5, 0.1) == pytest.approx(expected, rel=1e-12)


def test_ttft_quantile_by_hand_with_the_batch_mates_feedback():
    # n = 12, period(k) = 1 + 3(k − 1)/11, latency(k) = 0.5 + 2.5(k − 1)/11, service 1/3, rate 1.5 (ρ = 0.5).
    # batch: k = 1.5 · period(k) contracts by 1.5 · 3/11 = 9/22 towards k* = 1 + 0.5 · 11/6.5; eight steps from 1.
    period = lambda k: 1 + 3 * (k - 1) / 11  # noqa: E731
    fixed = 1 + 0.5 * 11 / 6.5
    k = fixed - (fixed - 1) * (9 / 22) ** 8
    mean_wait = 0.5 * (1 / 3) / (2 * 0.5)  # Pollaczek–Khinchine, deterministic service
    # batch-mates: Poisson 90 % quantile of the arrivals since the last batch formed, then once more with the
    # period of a batch that size: 1.5 · (period(k) + E[W]) ≈ 2.10 → 4, then 1.5 · (period(5) + E[W]) ≈ 3.39 → 6
    assert poisson.ppf(0.9, 1.5 * (period(k) + mean_wait)) == 4 and poisson.ppf(0.9, 1.5 * (period(5) + mean_wait)) == 6
    expected = mg1_wait_quantile(1.5, 1 / 3, 0.0, 0.1) + (period(k) - k / 3) + (0.5 + 2.5 * 6 / 11)
    q = _PrefillQueue(12, 1.0, 0.5, 4.0, 3.0, 0.0, 1.0)
    assert q.ttft_quantile(1.5, 0.1) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(dataclasses.FrozenInstanceError):  # computed once per engine, read ~30 times
        q.n = 3  # type: ignore[misc]


def test_a_long_prompt_adds_its_length_in_mean_prompts_to_the_batch():
    # as the light-load case, with the quantile prompt 2.5 mean prompts long: latency(3 + 2.5) = 1 + 4.5/7
    expected = mg1_wait_quantile(0.8, 0.5, 0.0, 0.1) + 0.5 + (1.0 + 4.5 / 7.0)
    assert queue(long_prompt=2.5).ttft_quantile(0.8, 0.1) == pytest.approx(expected, rel=1e-12)


def test_ttft_quantile_is_infinite_at_and_beyond_the_full_batch_rate():
    assert queue().ttft_quantile(2.0, 0.1) == math.inf  # 8 prompts per 4 s: ρ = 1
    assert queue().ttft_quantile(3.0, 0.1) == math.inf


def test_the_queue_reads_the_engines_pipeline_and_the_prompt_quantile():
    c = with_prompt(toy(), Lengths("uniform", 1000.0, low=500.0, high=1500.0))
    lay = layout(LAYERS, ["a/0"], ["b/0"])
    perf = prefill_perf(c, lay, 4096)
    q = _PrefillQueue.of(c, lay, perf, 0.1)
    assert q.n == perf.batch_seqs == 4
    assert (q.period_1, q.latency_1) == prefill_pipeline(c, lay, 1)
    assert (q.period_n, q.latency_n) == prefill_pipeline(c, lay, 4)
    assert q.scv == pytest.approx(1 / 12)  # uniform on [500, 1500]: variance 1000²/12
    assert q.long_prompt == pytest.approx(1.4)  # its 90 % quantile, 1400 tokens, in mean prompts
    assert _PrefillQueue.of(c, lay, perf, 0.95).long_prompt == 1.0  # never shorter than a mean prompt
    assert prefill_ttft_quantile(c, lay, perf, 0.5, 0.1) == q.ttft_quantile(0.5, 0.1)


# ----------------------------------------------------------------------------- goodput


def test_prefill_goodput_without_a_ttft_slo_is_the_unbounded_share_of_capacity():
    c = toy()
    lay = layout(LAYERS, ["a/0"])
    perf = prefill_perf(c, lay)
    # 95 % of capacity: beyond that a queue grows without bound in any finite run
    assert prefill_goodput(c, lay, perf, Slo(None, 0.1)) == pytest.approx(0.95 * perf.capacity_rps, rel=1e-12)


def test_prefill_goodput_under_a_loose_ttft_slo_stops_at_the_load_cap():
    c = toy()
    lay = layout(LAYERS, ["a/0"])
    perf = prefill_perf(c, lay)
    assert prefill_goodput(c, lay, perf, Slo(1e6, None)) == pytest.approx(0.8 * perf.capacity_rps, rel=1e-12)


def test_prefill_goodput_is_the_rate_whose_ttft_quantile_plus_the_reserve_meets_the_slo():
    c = toy(nic_b=1)  # a slow NIC: the KV reserve is a visible share of the SLO
    lay = layout(LAYERS, ["b/0"])
    perf = prefill_perf(c, lay)
    reserve = kv_reserve(c, lay)
    unloaded = prefill_ttft_quantile(c, lay, perf, 1e-9, 0.1)
    slo = Slo(reserve + 3.0 * unloaded, None)
    rate = prefill_goodput(c, lay, perf, slo)
    assert 0.0 < rate < 0.8 * perf.capacity_rps
    assert prefill_ttft_quantile(c, lay, perf, rate, 0.1) + reserve <= slo.ttft
    assert prefill_ttft_quantile(c, lay, perf, rate * 1.001, 0.1) + reserve > slo.ttft
    # both SLOs set: TTFT gets half the miss budget
    both = prefill_goodput(c, lay, perf, Slo(slo.ttft, 0.1))
    assert prefill_ttft_quantile(c, lay, perf, both, 0.05) + reserve <= slo.ttft
    assert prefill_ttft_quantile(c, lay, perf, both * 1.001, 0.05) + reserve > slo.ttft


def test_prefill_within_slo_takes_the_budget_with_the_most_goodput():
    # vLLM's budgets tried: one long prompt (1000 tokens here), 2048, 4096, 8192; each wins for some SLO
    c = toy()
    lay = layout(LAYERS, ["a/0"])
    winners = []
    for ttft in (0.004, 0.006, 0.01, 0.05):
        slo = Slo(ttft, None)
        perf, rate = prefill_within_slo(c, lay, slo)
        candidates = {b: prefill_goodput(c, lay, prefill_perf(c, lay, b), slo) for b in (1000, 2048, 4096, 8192)}
        assert rate == max(candidates.values())
        winners.append(perf.max_num_batched_tokens)
        assert candidates[winners[-1]] == rate
    assert winners == [1000, 2048, 4096, 8192]
    perf, rate = prefill_within_slo(c, lay, Slo(None, 0.1))  # no TTFT SLO: vLLM's default budget
    assert perf.max_num_batched_tokens == 8192 and rate == pytest.approx(0.95 * perf.capacity_rps, rel=1e-12)


def test_prefill_within_slo_ties_go_to_the_smallest_budget_and_skips_those_that_do_not_fit():
    c = toy()
    lay = layout(LAYERS, ["a/0"])
    perf, rate = prefill_within_slo(c, lay, Slo(1e-6, None))  # nothing meets it: every budget serves 0
    assert rate == 0.0 and perf.max_num_batched_tokens == 1000
    # weights 5.7 MB; a budget of b tokens needs b · 4 KiB of activations and 2b · 2 KiB of KV: 2048 fits in
    # 0.9 × 30 MB, 4096 does not
    small = toy(memory="0.03GB")
    assert prefill_perf(small, lay, 2048) is not None and prefill_perf(small, lay, 4096) is None
    perf, _ = prefill_within_slo(small, lay, Slo(50.0, None))
    assert perf.max_num_batched_tokens in (1000, 2048)
    assert prefill_within_slo(small, lay, Slo(None, 0.1)) is None  # 8192 alone, and it does not fit


def _erlang_c_textbook(c: int, a: float) -> float:
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("tpot", "attainment"), [(0.05, 0.9), (0.02, 0.99)])
def test_decode_goodput_is_where_erlang_c_reaches_the_tpot_miss_budget(tpot, attainment):
    c = toy()  # 11 output tokens: 10 decode steps a request
    perf = DecodePerf(capacity_rps=40.0, tpot_s=tpot, batch=6, kv_tokens=1e6)
    hold = 10 * tpot
    expected = brentq(lambda r: _erlang_c_textbook(6, r * hold) - (1 - attainment), 1e-9, 6 / hold - 1e-9)
    assert decode_goodput(c, perf, Slo(None, tpot, attainment)) == pytest.approx(expected, rel=1e-6)
    # with a TTFT SLO too, TPOT's share of the miss budget is half
    half = brentq(lambda r: _erlang_c_textbook(6, r * hold) - (1 - attainment) / 2, 1e-9, 6 / hold - 1e-9)
    assert decode_goodput(c, perf, Slo(1.0, tpot, attainment)) == pytest.approx(half, rel=1e-6)


def test_decode_goodput_is_capped_by_capacity_and_unbounded_without_a_tpot_slo():
    c = toy()
    perf = DecodePerf(capacity_rps=0.5, tpot_s=0.01, batch=64, kv_tokens=1e6)  # slots idle: capacity binds
    assert decode_goodput(c, perf, Slo(None, 0.01)) == 0.5
    assert decode_goodput(c, perf, Slo(1.0, None)) == pytest.approx(0.95 * 0.5, rel=1e-12)
