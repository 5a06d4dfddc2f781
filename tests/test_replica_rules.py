"""planner.costs.replica and planner.costs.memory at their edges: the KV a decode replica needs (whichever of one
long request and one mean sequence with headroom is larger), a TPOT SLO met exactly, TP all-reduces as a floor
of the decode step, a link too slow to be infinite, the model-fits check at its boundary, frozen records.

Why: test_costs_analytic.py checks the formulas in the middle of their range; these inputs sit where a `<` and a
`<=`, or a `max` and a `min`, part.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import cluster, hf_config, layout, node, toy_gpu

from planner.costs.allreduce import allreduce_seconds
from planner.costs.memory import check_model_fits, kv_capacity_tokens
from planner.costs.replica import (
    decode_perf,
    decode_stage_time,
    decode_step_time,
    hop_time,
    prefill_perf,
    stage_hardware,
)
from planner.errors import InfeasibleError

LAYERS = 4


def toy(*, memory="10GB", prompt=3000, output=101, link="pcie4", network: float = 8, bandwidth="100GB/s"):
    model = hf_config(layers=LAYERS, hidden=256, heads=4, kv_heads=2, ffn=512, vocab=1000)
    gpu = toy_gpu(memory=memory, link=link, bandwidth=bandwidth)
    return cluster(node("a", gpu, 2), node("b", gpu, 2), model=model, prompt=prompt, output=output, network=network,
                   latency="1ms")  # fmt: skip


ONE = layout(LAYERS, ["a/0"])


def smallest_memory_holding(tokens: float) -> tuple[str, str]:
    """The smallest memory (in 10 kB steps around the toy's weights and activations) whose KV capacity at 8192
    batched tokens reaches `tokens`; found by bisection over kv_capacity_tokens."""
    low, high = 1_000, 100_000  # units of 10 kB: 10 MB .. 1 GB
    while high - low > 1:
        mid = (low + high) // 2
        if kv_capacity_tokens(toy(memory=f"{mid * 10}KB"), ONE, 8192) >= tokens:
            high = mid
        else:
            low = mid
    return f"{high * 10}KB", f"{low * 10}KB"


@pytest.mark.parametrize(
    ("prompt", "output", "need"),
    [
        (3000, 101, (3000 + 50) / 0.95),  # long prompts, short outputs: one mean sequence with 5 % headroom
        (1000, 1000, 2000),  # long outputs: one request of p99.9 prompt and output
    ],
)
def test_a_decode_replica_needs_the_larger_of_one_long_request_and_one_mean_sequence(prompt, output, need):
    enough, short = smallest_memory_holding(need)
    fits = toy(memory=enough, prompt=prompt, output=output)
    assert kv_capacity_tokens(fits, ONE, 8192) >= need
    assert decode_perf(fits, ONE) is not None
    assert decode_perf(toy(memory=short, prompt=prompt, output=output), ONE) is None


def test_a_tpot_slo_met_exactly_by_the_full_batch_keeps_it():
    c = toy()
    full = decode_perf(c, ONE)
    exact = decode_perf(c, ONE, decode_step_time(c, ONE, full.batch, 3050.0))
    assert exact.batch == full.batch and exact.tpot_s == full.tpot_s


def test_tensor_parallel_decode_pays_two_all_reduces_per_layer_at_least():
    # a slow PCIe 3 link, a big batch and memory 1000× faster than the toy's: the all-reduces dominate the step
    c = toy(link="pcie3", bandwidth="100000GB/s")
    tp2 = layout(LAYERS, ["a/0", "a/1"])
    stage = tp2.stages[0]
    hw = stage_hardware(c, stage)
    for batch in (8192.0, 32768.0):  # sequences of 1 token of context: no KV to read to speak of
        one_allreduce = allreduce_seconds(hw.link, 2, batch * 256 * 2)
        step = decode_stage_time(c, stage, hw, batch, 1.0, True)
        assert step >= LAYERS * 2 * one_allreduce > 0.5 * step  # the floor, and it is most of the step


def test_a_link_of_a_fraction_of_a_byte_per_second_is_slow_not_missing():
    c = toy(network=1e-9)  # 0.125 byte/s
    a, b = layout(LAYERS, ["a/0"], ["b/0"]).stages
    assert hop_time(c, a, b, 1.0) == pytest.approx(256 * 2 / 0.125 + 1e-3)


def test_performance_records_are_frozen():
    c = toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        decode_perf(c, ONE).batch = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prefill_perf(c, ONE).batch_seqs = 1  # type: ignore[misc]


def test_the_model_fits_check_at_its_boundary():
    # need: weights (4 · 589 824 + 2 · 256 000 parameters, fp16) and one request's KV (3101 tokens · 4 layers ·
    # 2 KiB... per token-layer 2 · 2 KV heads · 64 · 2 bytes = 512 B); have: 4 GPUs · memory · 0.9
    weights = (4 * 589_824 + 2 * 256_000) * 2
    kv = 3101 * 4 * 512
    need = weights + kv
    per_gpu = need / 0.9 / 4
    check_model_fits(toy(memory=f"{per_gpu * 1.001:.0f}B"))
    with pytest.raises(InfeasibleError, match=r"needs 0\.0 GB .* all 4 GPUs together offer 0\.0 GB"):
        check_model_fits(toy(memory=f"{per_gpu * 0.999:.0f}B"))
