"""The cost model by hand on a toy: a 2-layer Llama-shaped model on a memory-bound GPU (efficiency 1, compute
effectively infinite). Memory (weights, activations, KV capacity, KV replication) is written out exactly. Times:
since the calibrated step model (issue 11: planner.costs.stepmodel, tested in test_costmodel.py) adds fitted
overheads, each step is checked against the physical roofline of bytes (or FLOPs) counted here — never faster —
and the replica's composition of stage steps is checked exactly: full prefill batches, pipelines at their slowest
step and adding up for latency, PP hops by hand, decode micro-batches, the KV batch with headroom, the largest
batch a TPOT SLO allows (by brute force), and the workload's effect."""

from __future__ import annotations

import math

import pytest
from builders import catalog, cluster, hf_config, layout, node, toy_gpu

from planner.costs.allreduce import allreduce_seconds
from planner.costs.memory import kv_capacity_tokens, kv_replication, stage_weight_bytes_per_gpu
from planner.costs.replica import (
    decode_perf,
    decode_stage_time,
    decode_step_time,
    prefill_batch_time,
    prefill_perf,
    prefill_stage_time,
    stage_hardware,
)

H, N, KV, D, F, V, L, B = 256, 4, 4, 64, 512, 1000, 2, 2  # hidden, heads, KV heads, head dim, FFN, vocab, layers
P = 2 * H * N * D + 2 * H * KV * D + 3 * H * F  # parameters per layer (gated MLP)
KV_TOKEN_LAYER = 2 * KV * D * B  # bytes of K and V per token per layer
BW = 100e9  # the toy GPU's memory bandwidth
PROMPT, OUTPUT = 1024, 11
BATCHED = 8192  # vLLM's max_num_batched_tokens the model plans with


def toy(memory: str = "10GB", count: int = 2, kv_heads: int = KV, gpu: dict | None = None, **options):
    model = hf_config(layers=L, hidden=H, heads=N, kv_heads=kv_heads, ffn=F, vocab=V)
    gpu = gpu or toy_gpu(memory=memory)
    options = {"prompt": PROMPT, "output": OUTPUT, **options}
    return cluster(node("a", gpu, count), node("b", gpu, count), model=model, network=8, latency="1ms", **options)


def one(c, *gpus):
    return layout(L, gpus)


def usable(memory: float) -> float:
    return 0.9 * memory


def activations(tp: int) -> float:
    return BATCHED * (4 * H + 2 * F / tp) * B


def weights_one_stage(tp: int) -> float:
    return (L * P + 2 * V * H) * B / tp  # embedding and LM head (untied)


# ----------------------------------------------------------------------------- memory


def test_a_single_stage_holds_every_layer_the_embedding_and_the_lm_head() -> None:
    c = toy()
    (stage,) = one(c, "a/0").stages
    assert stage_weight_bytes_per_gpu(c, stage, True, True) == pytest.approx(weights_one_stage(1))
    (pair,) = one(c, "a/0", "a/1").stages
    assert stage_weight_bytes_per_gpu(c, pair, True, True) == pytest.approx(weights_one_stage(2))


def test_kv_capacity_is_free_memory_over_kv_bytes_per_token() -> None:
    c = toy()
    free = usable(10e9) - weights_one_stage(1) - activations(1)
    assert kv_capacity_tokens(c, one(c, "a/0"), BATCHED) == pytest.approx(free / (KV_TOKEN_LAYER * L))
    free2 = usable(10e9) - weights_one_stage(2) - activations(2)
    assert kv_capacity_tokens(c, one(c, "a/0", "a/1"), BATCHED) == pytest.approx(free2 / (KV_TOKEN_LAYER * L / 2))


def test_pipeline_stages_hold_their_own_layers_and_the_tightest_decides() -> None:
    """Stage 0: layer 0 + embedding; stage 1: layer 1 + LM head; equal here, so each holds its layer's KV."""
    c = toy()
    pipe = layout(L, ["a/0"], ["b/0"])
    first, last = pipe.stages
    assert stage_weight_bytes_per_gpu(c, first, True, False) == pytest.approx((P + V * H) * B)
    assert stage_weight_bytes_per_gpu(c, last, False, True) == pytest.approx((P + V * H) * B)
    free = usable(10e9) - (P + V * H) * B - activations(1)
    assert kv_capacity_tokens(c, pipe, BATCHED) == pytest.approx(free / KV_TOKEN_LAYER)


def test_tp_beyond_the_kv_heads_replicates_them() -> None:
    """2 KV heads on 4 GPUs: each GPU keeps one, the cache is stored twice."""
    c = toy(kv_heads=2, count=4)
    assert kv_replication(c, 1) == 1 and kv_replication(c, 2) == 1 and kv_replication(c, 4) == 2
    kv_layer = 2 * 2 * D * B
    free = usable(10e9) - (L * (2 * H * N * D + 2 * H * 2 * D + 3 * H * F) + 2 * V * H) * B / 4 - activations(4)
    assert kv_capacity_tokens(c, one(c, "a/0", "a/1", "a/2", "a/3"), BATCHED) == pytest.approx(
        free / (kv_layer * L * 2 / 4)
    )


# ----------------------------------------------------------------------------- prefill


def prefill_bytes(seqs: int, last: bool = True, layers: int = L) -> float:
    tokens = seqs * PROMPT
    return layers * (P * B + tokens * (2 * H * B + KV_TOKEN_LAYER)) + (V * H * B if last else 0)


def test_prefill_capacity_is_a_full_batch_over_its_time() -> None:
    c = toy()
    perf = prefill_perf(c, one(c, "a/0"))
    seqs = BATCHED // PROMPT  # 8 prompts of 1024 tokens fill max_num_batched_tokens
    assert perf.batch_seqs == seqs and perf.max_num_batched_tokens == BATCHED
    full, alone = prefill_step(c, one(c, "a/0"), 0, seqs), prefill_step(c, one(c, "a/0"), 0, 1)
    assert perf.capacity_rps == pytest.approx(seqs / full) and perf.latency_s == pytest.approx(alone)
    assert full >= prefill_bytes(seqs) / BW and alone >= prefill_bytes(1) / BW, "never faster than the roofline"


def prefill_step(c, lay, index: int, seqs: int) -> float:
    """Stage `index`'s step time for `seqs` workload prompts (the step model's own, composed by the test)."""
    stage = lay.stages[index]
    return prefill_stage_time(c, stage, stage_hardware(c, stage), seqs, index == lay.pp - 1)


def allreduce(size: float, tp: int) -> float:
    return allreduce_seconds(catalog().link("pcie4"), tp, size)


def test_tensor_parallel_prefill_splits_the_bytes_and_pays_two_all_reduces_per_layer() -> None:
    c = toy()
    pair = one(c, "a/0", "a/1")
    perf = prefill_perf(c, pair)
    seqs = BATCHED // PROMPT
    step = prefill_step(c, pair, 0, seqs)
    assert perf.capacity_rps == pytest.approx(seqs / step)
    assert step >= prefill_bytes(seqs) / (2 * BW) + L * 2 * allreduce(seqs * PROMPT * H * B, 2)


def test_a_prefill_pipeline_runs_at_its_slowest_step_and_adds_up_for_latency() -> None:
    """Stages a/0 (layer 0, embedding) and b/0 (layer 1, LM head) with an 8 Gbit/s, 1 ms hop between them."""
    c = toy()
    pipe = layout(L, ["a/0"], ["b/0"])
    seqs = BATCHED // PROMPT

    def steps(n: int) -> list[float]:
        hop = n * PROMPT * H * B / (8e9 / 8) + 1e-3
        first, last = prefill_step(c, pipe, 0, n), prefill_step(c, pipe, 1, n)
        assert first >= prefill_bytes(n, last=False, layers=1) / BW and last >= prefill_bytes(n, layers=1) / BW
        return [first, hop, last]

    perf = prefill_perf(c, pipe)
    assert perf.capacity_rps == pytest.approx(seqs / max(steps(seqs)))
    assert perf.latency_s == pytest.approx(sum(steps(1)))
    period, latency = prefill_batch_time(c, pipe, [PROMPT] * 3)
    assert (period, latency) == (pytest.approx(max(steps(3))), pytest.approx(sum(steps(3))))


def test_prefill_needs_room_for_two_batches_of_kv() -> None:
    """KV for 2 × 8192 tokens (32 MiB here) must fit beside the weights and activations."""
    c = toy(memory="0.075GB")  # 67.5 MB usable: ~3 MB weights, ~34 MB activations, ~31 MB for KV
    free = usable(0.075e9) - weights_one_stage(1) - activations(1)
    assert free / (KV_TOKEN_LAYER * L) < 2 * BATCHED
    assert prefill_perf(c, one(c, "a/0")) is None


# ----------------------------------------------------------------------------- decode


def decode_step(batch: float, context: float, tp: int = 1) -> float:
    return (L * (P * B + batch * context * KV_TOKEN_LAYER) + V * H * B) / (tp * BW)


CONTEXT = PROMPT + (OUTPUT - 1) / 2  # mean context over a sequence's decode


def test_decode_batch_is_capped_by_max_num_seqs_when_memory_is_plenty() -> None:
    c = toy()
    perf = decode_perf(c, one(c, "a/0"))
    assert perf.batch == 512
    assert perf.tpot_s == pytest.approx(decode_step_time(c, one(c, "a/0"), 512, CONTEXT))
    assert perf.tpot_s >= decode_step(512, CONTEXT)
    assert perf.capacity_rps == pytest.approx(512 / perf.tpot_s / (OUTPUT - 1))


def test_decode_batch_is_what_kv_memory_holds_with_headroom() -> None:
    c = toy(memory="0.5GB")
    kv = usable(0.5e9) - weights_one_stage(1) - activations(1)
    batch = math.floor(0.95 * kv / (KV_TOKEN_LAYER * L) / CONTEXT)
    assert batch < 512
    perf = decode_perf(c, one(c, "a/0"))
    assert perf.batch == batch and perf.tpot_s == pytest.approx(decode_step_time(c, one(c, "a/0"), batch, CONTEXT))


def test_the_kv_batch_is_sized_for_the_mean_context_over_a_sequences_life() -> None:
    """1001 output tokens: a sequence holds 1024 + 1000/2 tokens on average while it decodes."""
    c = toy(memory="0.5GB", output=1001)
    kv = usable(0.5e9) - weights_one_stage(1) - activations(1)
    context = PROMPT + 1000 / 2
    perf = decode_perf(c, one(c, "a/0"))
    assert perf.batch == math.floor(0.95 * kv / (KV_TOKEN_LAYER * L) / context)
    assert perf.tpot_s == pytest.approx(decode_step_time(c, one(c, "a/0"), perf.batch, context))
    assert perf.capacity_rps == pytest.approx(perf.batch / perf.tpot_s / 1000)


def test_a_tpot_slo_takes_the_largest_batch_that_meets_it() -> None:
    """Brute force over every batch: the SLO allows the largest batch whose step meets it."""
    c = toy()
    steps = [decode_step_time(c, one(c, "a/0"), n, CONTEXT) for n in range(1, 513)]
    steps = [0.0, *steps]  # steps[n]: n sequences
    assert steps == sorted(steps)
    slo = (steps[100] + steps[101]) / 2
    perf = decode_perf(c, one(c, "a/0"), tpot_slo=slo)
    assert perf.batch == max(n for n in range(1, 513) if steps[n] <= slo) == 100 and perf.tpot_s <= slo
    assert decode_perf(c, one(c, "a/0"), tpot_slo=steps[1] * 0.999) is None, "not even one sequence"


def test_tensor_parallel_decode_splits_the_bytes_and_pays_two_all_reduces_per_layer() -> None:
    c = toy()
    batch, context = 32, 1000
    lower = decode_step(batch, context, tp=2) + L * 2 * allreduce(batch * H * B, 2)
    assert decode_step_time(c, one(c, "a/0", "a/1"), batch, context) >= lower


def test_a_decode_pipeline_steps_through_micro_batches() -> None:
    """PP = 2: the batch is split in two micro-batches; a sequence waits for max(all stages and the hop in turn,
    2 × the slowest) per token."""
    c = toy()
    pipe = layout(L, ["a/0"], ["b/0"])
    batch, context = 64, 1000
    micro = batch / 2
    first, last = (
        decode_stage_time(c, s, stage_hardware(c, s), micro, context, s is pipe.stages[-1]) for s in pipe.stages
    )
    assert first >= (P * B + micro * context * KV_TOKEN_LAYER) / BW and last >= first + V * H * B / BW
    hop = micro * H * B / (8e9 / 8) + 1e-3
    expected = max(first + hop + last, 2 * max(first, hop, last))
    assert decode_step_time(c, pipe, batch, context) == pytest.approx(expected)


def test_a_model_that_does_not_fit_has_no_decode_or_prefill() -> None:
    c = toy(memory="0.02GB")  # 18 MB usable < 3 MB weights + 34 MB activations
    assert kv_capacity_tokens(c, one(c, "a/0"), BATCHED) < 0
    assert decode_perf(c, one(c, "a/0")) is None and prefill_perf(c, one(c, "a/0")) is None


# ----------------------------------------------------------------------------- compute-bound


PEAK = 1e12  # a compute-bound toy: 1 TFLOPS, memory bandwidth effectively infinite


def compute_bound():
    return toy(gpu=toy_gpu(fp16="1TFLOPS", bandwidth="1000000GB/s"))


def test_compute_bound_prefill_counts_matmuls_causal_attention_and_the_lm_head() -> None:
    """FLOPs per layer 2·P·tokens + 2·n·d·Σs²; the LM head 2·V·h per prompt (its last position)."""
    c = compute_bound()
    seqs = BATCHED // PROMPT

    def flops(n: int) -> float:
        return L * (2 * P * n * PROMPT + 2 * N * D * n * PROMPT**2) + 2 * n * V * H

    perf = prefill_perf(c, one(c, "a/0"))
    assert perf.capacity_rps <= seqs / (flops(seqs) / PEAK) and perf.latency_s >= flops(1) / PEAK
    period, _ = prefill_batch_time(c, one(c, "a/0"), [100, 300])
    exact = L * (2 * P * 400 + 2 * N * D * (100**2 + 300**2)) + 2 * 2 * V * H
    assert period >= exact / PEAK, "concrete prompts: Σs and Σs² of the batch"
    even, _ = prefill_batch_time(c, one(c, "a/0"), [200, 200])
    assert period - even == pytest.approx(2 * N * D * L * (100**2 + 300**2 - 2 * 200**2) / PEAK, rel=0.2), (
        "the same tokens, a larger Σs²: only the causal attention grows"
    )


def test_compute_bound_decode_counts_weights_attention_over_the_context_and_the_lm_head() -> None:
    """FLOPs per token 2·P + 4·c·n·d per layer, 2·V·h for the LM head."""
    c = compute_bound()
    batch, context = 16, 900
    flops = L * batch * (2 * P + 4 * context * N * D) + 2 * batch * V * H
    assert decode_step_time(c, one(c, "a/0"), batch, context) >= flops / PEAK
    longer = decode_step_time(c, one(c, "a/0"), batch, 2 * context) - decode_step_time(c, one(c, "a/0"), batch, context)
    assert longer >= L * batch * 4 * context * N * D / PEAK * 0.99, "attention over the context: 4·c·n·d per layer"
