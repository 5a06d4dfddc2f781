"""Time model of one replica (TP × PP): prefill and decode capacity, batch and step times.

Each stage's step time is planner.costs.stepmodel's (model form v2: GEMMs with token-dependent compute
efficiency, per-layer elementwise cost, separate attention terms, measured all-reduce from
planner.costs.allreduce, LM head on the last stage, the per-iteration overhead t0(TP) once per step)
with the GPU's calibrated factors (planner.inputs.calibrations; priors when uncalibrated).

- prefill of prompts s_i: Σs_i tokens through the GEMMs, Σs_i² for causal attention;
- decode: `batch` sequences at mean context c, reading batch·c tokens of KV cache per layer;
- a PP hop moves tokens·h·b bytes over the link between the two stages' nodes;
- a pipeline's throughput is set by its slowest stage, its latency by the sum of stages.

Efficiencies are ≤ 1 and overheads ≥ 0, so every time is ≥ the physical roofline (tests check this).
All functions are pure; times in seconds, sizes in bytes, rates in requests/s. Memory is in
planner.costs.memory, KV transfers between replicas in planner.costs.kvtransfer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from weakref import WeakKeyDictionary

from planner.costs.allreduce import allreduce_seconds
from planner.costs.layout import Layout, Stage
from planner.costs.memory import kv_capacity_tokens, kv_replication
from planner.costs.stepmodel import Factors, decode_work, gpu_factors, prefill_work, seconds
from planner.inputs.catalog import LinkProfile
from planner.inputs.problem import Cluster, GpuSlot

MAX_NUM_SEQS = 512
# Decode admits sequences while KV blocks are free, but sequences grow; sizing the batch for the
# mean context exactly makes vLLM preempt constantly (seen in the simulator), so keep 5% spare.
DECODE_KV_HEADROOM = 0.95
DEFAULT_BATCHED_TOKENS = 8192


@dataclass(frozen=True)
class StageHardware:
    """What a stage runs on, looked up once from the cluster."""

    slot: GpuSlot
    tp: int
    link: LinkProfile  # the intra-node link the TP group all-reduces over
    factors: Factors


def stage_hardware(cluster: Cluster, stage: Stage) -> StageHardware:
    slot = cluster.gpu_by_id[stage.gpus[0]]
    node = cluster.node_by_name[slot.node]
    return StageHardware(slot, stage.tp, node.intra_link, gpu_factors(slot.gpu, cluster.dtype, stage.tp))


_MEMO: WeakKeyDictionary[Cluster, dict[tuple, float]] = WeakKeyDictionary()


def _stage_memo(cluster: Cluster) -> dict[tuple, float]:
    """Stage times of this cluster by (GPU, link, TP, layers, work): many layouts share the same stages, and
    the search asks again and again (ids are stable while the cluster, which holds the records, lives)."""
    memo = _MEMO.get(cluster)
    if memo is None:
        memo = _MEMO[cluster] = {}
    return memo


def tp_allreduce_time(cluster: Cluster, hw: StageHardware, tokens: float) -> float:
    """One layer's TP all-reduce of the activations of `tokens` tokens (two per layer in the step)."""
    return allreduce_seconds(hw.link, hw.tp, tokens * cluster.model.hidden * cluster.dtype_bytes)


def hop_time(cluster: Cluster, a: Stage, b: Stage, tokens: float) -> float:
    """Activations of `tokens` crossing from stage a to stage b."""
    node_a = cluster.gpu_by_id[a.gpus[0]].node
    node_b = cluster.gpu_by_id[b.gpus[0]].node
    bandwidth = cluster.node_bandwidth(node_a, node_b)
    if bandwidth <= 0:
        return math.inf
    return tokens * cluster.model.hidden * cluster.dtype_bytes / bandwidth + cluster.node_latency(node_a, node_b)


# ----------------------------------------------------------------------------- prefill


def prefill_stage_time(cluster: Cluster, stage: Stage, hw: StageHardware, n_seqs: float, last: bool) -> float:
    """One stage's time to prefill n_seqs prompts drawn from the workload."""
    prompt = cluster.workload.prompt
    tokens, squares = n_seqs * prompt.mean, n_seqs * prompt.second_moment
    return prefill_tokens_stage_time(cluster, stage, hw, n_seqs, tokens, squares, last)


def prefill_tokens_stage_time(
    cluster: Cluster, stage: Stage, hw: StageHardware, n_seqs: float, tokens: float, squares: float, last: bool
) -> float:
    """One stage's time to prefill n_seqs prompts of `tokens` tokens in all, Σ(prompt²) = `squares`.

    The last stage computes the LM head for each prompt's last position and pays the step overhead."""
    memo = _stage_memo(cluster)
    key = ("p", id(hw.slot.gpu), id(hw.link), hw.tp, stage.layers, n_seqs, tokens, squares, last)
    hit = memo.get(key)
    if hit is None:
        work = prefill_work(
            cluster.model, hw.tp, cluster.dtype_bytes, stage.layers, n_seqs, tokens, squares,
            allreduce_s=2 * tp_allreduce_time(cluster, hw, tokens), lm_head=last, steps=1.0 if last else 0.0,
        )  # fmt: skip
        hit = memo[key] = seconds(hw.factors, work)
    return hit


@dataclass(frozen=True)
class PrefillPerf:
    capacity_rps: float  # requests/s at full batches
    latency_s: float  # one prompt alone through the pipeline (unloaded TTFT)
    batch_seqs: int
    max_num_batched_tokens: int
    kv_tokens: float


def kv_need(cluster: Cluster, role: str, max_batched_tokens: int | None = None) -> tuple[int, float]:
    """(max_num_batched_tokens, KV tokens) a replica of the role must hold to run at all: prefill, the
    batch being computed plus the one waiting to be shipped (batches of `max_batched_tokens`, default 8192,
    never less than a long prompt); decode, one long request (p99.9 prompt and output) and one sequence of
    mean context with the KV headroom. Layout searches size stages by it."""
    workload = cluster.workload
    if role == "prefill":
        batched = max(max_batched_tokens or DEFAULT_BATCHED_TOKENS, math.ceil(workload.prompt.upper))
        return batched, 2.0 * batched
    mean_context = workload.prompt.mean + workload.decode_tokens / 2
    return DEFAULT_BATCHED_TOKENS, max(workload.prompt.upper + workload.output.upper, mean_context / DECODE_KV_HEADROOM)


def prefill_batch_seqs(cluster: Cluster, max_batched_tokens: int | None = None) -> int:
    """Prompts in one full prefill batch: as many mean prompts as max_num_batched_tokens holds."""
    batched, _ = kv_need(cluster, "prefill", max_batched_tokens)
    return max(1, min(MAX_NUM_SEQS, math.floor(batched / cluster.workload.prompt.mean)))


def prefill_pipeline(cluster: Cluster, layout: Layout, seqs: float) -> tuple[float, float]:
    """(period, latency) of a batch of `seqs` mean prompts: when the pipeline takes the next batch (its slowest
    stage or hop), and how long one batch takes through every stage and hop."""
    prompt = cluster.workload.prompt
    last = layout.pp - 1
    times = [
        prefill_stage_time(cluster, stage, stage_hardware(cluster, stage), seqs, i == last)
        for i, stage in enumerate(layout.stages)
    ]
    hops = [hop_time(cluster, a, b, seqs * prompt.mean) for a, b in pairwise(layout.stages)]
    return max(times + hops), sum(times) + sum(hops)


def prefill_perf(cluster: Cluster, layout: Layout, max_batched_tokens: int | None = None) -> PrefillPerf | None:
    """Prefill capacity of a replica batching up to `max_batched_tokens` prompt tokens (default 8192; never
    less than a long prompt), or None when it cannot hold the model and one batch's KV."""
    batched, need = kv_need(cluster, "prefill", max_batched_tokens)
    kv_tokens = kv_capacity_tokens(cluster, layout, batched)
    if kv_tokens < need:
        return None
    n_seqs = prefill_batch_seqs(cluster, max_batched_tokens)
    period, _ = prefill_pipeline(cluster, layout, n_seqs)
    _, latency = prefill_pipeline(cluster, layout, 1)
    return PrefillPerf(n_seqs / period, latency, n_seqs, batched, kv_tokens)


def prefill_batch_time(cluster: Cluster, layout: Layout, prompts: Sequence[int]) -> tuple[float, float]:
    """(period, latency) of one prefill batch of concrete prompt lengths (the simulator's view).

    period = slowest stage or hop: when the pipeline can take the next batch; latency = sum of all.
    """
    n, tokens, squares = len(prompts), float(sum(prompts)), float(sum(p * p for p in prompts))
    last = layout.pp - 1
    times = [
        prefill_tokens_stage_time(cluster, stage, stage_hardware(cluster, stage), n, tokens, squares, i == last)
        for i, stage in enumerate(layout.stages)
    ]
    times += [hop_time(cluster, a, b, tokens) for a, b in pairwise(layout.stages)]
    return max(times), sum(times)


# ----------------------------------------------------------------------------- decode


def decode_stage_time(
    cluster: Cluster, stage: Stage, hw: StageHardware, batch: float, context: float, last: bool
) -> float:
    """One stage's time for one decode step of `batch` sequences at mean context `context`."""
    memo = _stage_memo(cluster)
    key = ("d", id(hw.slot.gpu), id(hw.link), hw.tp, stage.layers, batch, context, last)
    hit = memo.get(key)
    if hit is None:
        work = decode_work(
            cluster.model, hw.tp, cluster.dtype_bytes, stage.layers, batch, context, kv_replication(cluster, hw.tp),
            allreduce_s=2 * tp_allreduce_time(cluster, hw, batch), lm_head=last, steps=1.0 if last else 0.0,
        )  # fmt: skip
        hit = memo[key] = seconds(hw.factors, work)
    return hit


def decode_step_time(cluster: Cluster, layout: Layout, batch: float, context: float) -> float:
    """Time between two tokens of one sequence when `batch` sequences decode together.

    With pp stages the batch is split in pp micro-batches that flow through the pipeline
    back to back, so a sequence waits pp × the slowest stage's micro-batch time.
    """
    micro = batch / layout.pp
    last = layout.pp - 1
    times = [
        decode_stage_time(cluster, stage, stage_hardware(cluster, stage), micro, context, i == last)
        for i, stage in enumerate(layout.stages)
    ]
    hops = [hop_time(cluster, a, b, micro) for a, b in pairwise(layout.stages)]
    return max(sum(times) + sum(hops), layout.pp * max(times + hops))


@dataclass(frozen=True)
class DecodePerf:
    capacity_rps: float
    tpot_s: float
    batch: int  # concurrent sequences (max_num_seqs)
    kv_tokens: float


def decode_perf(cluster: Cluster, layout: Layout, tpot_slo: float | None = None) -> DecodePerf | None:
    """Largest batch that fits in KV memory (and meets the TPOT SLO); None if not even one sequence can."""
    workload = cluster.workload
    batched, need = kv_need(cluster, "decode")
    kv_tokens = kv_capacity_tokens(cluster, layout, batched)
    if kv_tokens < need:  # not one long request, or not one sequence of mean context with headroom
        return None
    context = workload.prompt.mean + workload.decode_tokens / 2  # mean context over a sequence's life
    batch = min(MAX_NUM_SEQS, math.floor(DECODE_KV_HEADROOM * kv_tokens / context))
    step = decode_step_time(cluster, layout, batch, context)
    if tpot_slo is not None and step > tpot_slo:
        low, high = 0, batch  # step time grows with batch: find the largest batch under the SLO
        while high - low > 1:
            mid = (low + high) // 2
            if decode_step_time(cluster, layout, mid, context) <= tpot_slo:
                low = mid
            else:
                high = mid
        if low == 0:
            return None
        batch, step = low, decode_step_time(cluster, layout, low, context)
    return DecodePerf(batch / step / workload.decode_tokens, step, batch, kv_tokens)
