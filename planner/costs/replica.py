"""Roofline cost model of dense-transformer inference on one replica (TP × PP) and between replicas.

Notation (per layer): h hidden, n heads, n_kv KV heads, d head dim, f FFN width, b bytes per
parameter, P = 2hnd + 2h·n_kv·d + (3|2)hf parameters.

- prefill FLOPs for a batch of prompts s_i: 2·P·Σs_i + 2·n·d·Σs_i² (causal attention);
- decode FLOPs per token at context c: 2·P + 4·c·n·d; bytes: P·b + c·2·n_kv·d·b (KV read);
- a stage of t GPUs takes max(FLOPs / (t·peak·eff_c), bytes / (t·bw·eff_m)) per layer, plus two ring
  all-reduces of tokens·h·b bytes (α-β model: 2(t−1)·α + 2(t−1)/t · size / link_bw);
- a PP hop moves tokens·h·b bytes over the link between the two stages' nodes;
- a pipeline's throughput is set by its slowest stage, its latency by the sum of stages.

Efficiencies are ≤ 1, so every time is ≥ the physical roofline (tests check this).
All functions are pure; times in seconds, sizes in bytes, rates in requests/s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster, GpuSlot

MAX_NUM_SEQS = 512
# Decode admits sequences while KV blocks are free, but sequences grow; sizing the batch for the
# mean context exactly makes vLLM preempt constantly (seen in the simulator), so keep 5% spare.
DECODE_KV_HEADROOM = 0.95
DEFAULT_BATCHED_TOKENS = 8192
# vLLM sizes its activation workspace for max_num_batched_tokens; per token it keeps roughly
# the residual stream, attention output and the MLP's intermediate activations alive.
ACTIVATION_WIDTH_HIDDEN = 4
ACTIVATION_WIDTH_FFN = 2


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: `tp` GPUs of one type on one node holding layers [layer_start, layer_end)."""

    gpus: tuple[str, ...]
    layer_start: int
    layer_end: int

    @property
    def tp(self) -> int:
        return len(self.gpus)

    @property
    def layers(self) -> int:
        return self.layer_end - self.layer_start


@dataclass(frozen=True)
class Layout:
    """A replica's parallel layout: stages in pipeline order covering every layer exactly once."""

    stages: tuple[Stage, ...]

    @property
    def pp(self) -> int:
        return len(self.stages)

    @property
    def tp(self) -> int:
        return self.stages[0].tp

    @cached_property
    def gpus(self) -> tuple[str, ...]:
        return tuple(g for stage in self.stages for g in stage.gpus)


@dataclass(frozen=True)
class StageHardware:
    """What a stage runs on, looked up once from the cluster."""

    slot: GpuSlot
    tp: int
    allreduce_bandwidth: float
    allreduce_latency: float


def stage_hardware(cluster: Cluster, stage: Stage) -> StageHardware:
    slot = cluster.gpu_by_id[stage.gpus[0]]
    node = cluster.node_by_name[slot.node]
    return StageHardware(slot, stage.tp, node.intra_link.bandwidth, node.intra_link.latency)


# ----------------------------------------------------------------------------- primitives


def allreduce_time(size: float, tp: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce of `size` bytes over tp GPUs (α-β model); zero for tp = 1."""
    if tp <= 1:
        return 0.0
    steps = 2 * (tp - 1)
    return steps * latency + steps / tp * size / bandwidth


def roofline(flops: float, nbytes: float, hw: StageHardware, dtype: str) -> float:
    """Time of a kernel sequence bounded by compute or memory, whichever is slower."""
    gpu = hw.slot.gpu
    compute = flops / (hw.tp * gpu.flops(dtype) * gpu.compute_efficiency)
    memory = nbytes / (hw.tp * gpu.memory_bandwidth * gpu.memory_efficiency)
    return max(compute, memory)


def kv_bytes_per_token_layer(cluster: Cluster) -> float:
    return cluster.model.kv_elements_per_token_layer() * cluster.dtype_bytes


def valid_tp(cluster: Cluster, tp: int) -> bool:
    """TP sizes vLLM accepts: they split the attention heads evenly and the KV heads evenly or by replication."""
    model = cluster.model
    return model.heads % tp == 0 and (model.kv_heads % tp == 0 or tp % model.kv_heads == 0)


def kv_replication(cluster: Cluster, tp: int) -> float:
    """How many times the KV cache is stored across a TP group: 1 unless tp > KV heads, when vLLM
    replicates each KV head on tp / kv_heads GPUs (each GPU holds ⌈kv_heads / tp⌉ heads)."""
    kv_heads = cluster.model.kv_heads
    return tp * math.ceil(kv_heads / tp) / kv_heads


def kv_bytes_per_request(cluster: Cluster) -> float:
    """KV cache a prefill replica ships to decode for one mean prompt (all layers)."""
    return cluster.workload.prompt.mean * cluster.model.layers * kv_bytes_per_token_layer(cluster)


def hop_time(cluster: Cluster, a: Stage, b: Stage, tokens: float) -> float:
    """Activations of `tokens` crossing from stage a to stage b."""
    node_a = cluster.gpu_by_id[a.gpus[0]].node
    node_b = cluster.gpu_by_id[b.gpus[0]].node
    bandwidth = cluster.node_bandwidth(node_a, node_b)
    if bandwidth <= 0:
        return math.inf
    return tokens * cluster.model.hidden * cluster.dtype_bytes / bandwidth + cluster.node_latency(node_a, node_b)


# ----------------------------------------------------------------------------- memory


def stage_weight_bytes_per_gpu(cluster: Cluster, stage: Stage, first: bool, last: bool) -> float:
    model = cluster.model
    params = stage.layers * model.params_per_layer
    embedding = model.vocab * model.hidden
    if first:
        params += embedding
    if last and (not model.tie_embeddings or not first):
        params += embedding
    return params * cluster.dtype_bytes / stage.tp


def activation_bytes_per_gpu(cluster: Cluster, tp: int, batched_tokens: int) -> float:
    model = cluster.model
    width = ACTIVATION_WIDTH_HIDDEN * model.hidden + ACTIVATION_WIDTH_FFN * model.ffn / tp
    return batched_tokens * width * cluster.dtype_bytes


def kv_capacity_tokens(cluster: Cluster, layout: Layout, batched_tokens: int) -> float:
    """Tokens of KV cache the replica can hold (its tightest stage decides); ≤ 0 means the weights do not fit."""
    per_token_layer = kv_bytes_per_token_layer(cluster)
    capacity = math.inf
    for i, stage in enumerate(layout.stages):
        gpu = cluster.gpu_by_id[stage.gpus[0]].gpu
        usable = gpu.memory * cluster.memory_utilization
        used = stage_weight_bytes_per_gpu(cluster, stage, i == 0, i == layout.pp - 1)
        used += activation_bytes_per_gpu(cluster, stage.tp, batched_tokens)
        free_per_gpu = usable - used
        stored = per_token_layer * kv_replication(cluster, stage.tp) / stage.tp  # per GPU
        capacity = min(capacity, free_per_gpu / (stored * max(stage.layers, 1)))
    return capacity


# ----------------------------------------------------------------------------- prefill


def prefill_stage_time(cluster: Cluster, stage: Stage, hw: StageHardware, n_seqs: float, last: bool) -> float:
    """One stage's time to prefill n_seqs prompts drawn from the workload."""
    prompt = cluster.workload.prompt
    tokens, squares = n_seqs * prompt.mean, n_seqs * prompt.second_moment
    return prefill_tokens_stage_time(cluster, stage, hw, n_seqs, tokens, squares, last)


def prefill_tokens_stage_time(
    cluster: Cluster, stage: Stage, hw: StageHardware, n_seqs: float, tokens: float, squares: float, last: bool
) -> float:
    """One stage's time to prefill n_seqs prompts of `tokens` tokens in all, Σ(prompt²) = `squares`."""
    model, b = cluster.model, cluster.dtype_bytes
    flops = stage.layers * (2 * model.params_per_layer * tokens + 2 * model.heads * model.head_dim * squares)
    nbytes = stage.layers * (
        model.params_per_layer * b + tokens * (2 * model.hidden * b + kv_bytes_per_token_layer(cluster))
    )
    if last:  # LM head for each prompt's last position
        flops += 2 * n_seqs * model.vocab * model.hidden
        nbytes += model.vocab * model.hidden * b
    comm = (
        stage.layers
        * 2
        * allreduce_time(tokens * model.hidden * b, hw.tp, hw.allreduce_bandwidth, hw.allreduce_latency)
    )
    return roofline(flops, nbytes, hw, cluster.dtype) + comm


@dataclass(frozen=True)
class PrefillPerf:
    capacity_rps: float  # requests/s at full batches
    latency_s: float  # one prompt alone through the pipeline (unloaded TTFT)
    batch_seqs: int
    max_num_batched_tokens: int
    kv_tokens: float


def prefill_perf(cluster: Cluster, layout: Layout) -> PrefillPerf | None:
    """Prefill capacity of a replica, or None when it cannot hold the model and one batch's KV."""
    prompt = cluster.workload.prompt
    batched = max(DEFAULT_BATCHED_TOKENS, math.ceil(prompt.upper))
    kv_tokens = kv_capacity_tokens(cluster, layout, batched)
    if kv_tokens < 2 * batched:  # the batch being computed plus the one waiting to be shipped
        return None
    n_seqs = max(1, min(MAX_NUM_SEQS, math.floor(batched / prompt.mean)))
    hardware = [stage_hardware(cluster, stage) for stage in layout.stages]
    last = layout.pp - 1

    def pipeline(seqs: float) -> tuple[float, float]:
        times = [
            prefill_stage_time(cluster, s, hw, seqs, i == last)
            for i, (s, hw) in enumerate(zip(layout.stages, hardware))
        ]
        hops = [hop_time(cluster, a, b, seqs * prompt.mean) for a, b in pairwise(layout.stages)]
        return max(times + hops), sum(times) + sum(hops)

    period, _ = pipeline(n_seqs)
    _, latency = pipeline(1)
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
    model, b = cluster.model, cluster.dtype_bytes
    kv_layer = kv_bytes_per_token_layer(cluster) * kv_replication(cluster, hw.tp)
    flops = stage.layers * batch * (2 * model.params_per_layer + 4 * context * model.heads * model.head_dim)
    nbytes = stage.layers * (model.params_per_layer * b + batch * context * kv_layer)
    if last:
        flops += 2 * batch * model.vocab * model.hidden
        nbytes += model.vocab * model.hidden * b
    comm = (
        stage.layers * 2 * allreduce_time(batch * model.hidden * b, hw.tp, hw.allreduce_bandwidth, hw.allreduce_latency)
    )
    return roofline(flops, nbytes, hw, cluster.dtype) + comm


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
    kv_tokens = kv_capacity_tokens(cluster, layout, DEFAULT_BATCHED_TOKENS)
    context = workload.prompt.mean + workload.decode_tokens / 2  # mean context over a sequence's life
    batch = min(
        MAX_NUM_SEQS, math.floor(DECODE_KV_HEADROOM * kv_tokens / (workload.prompt.mean + workload.decode_tokens / 2))
    )
    if batch < 1 or kv_tokens < workload.prompt.upper + workload.output.upper:
        return None
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


# ----------------------------------------------------------------------------- KV transfer


def kv_transfer_time(cluster: Cluster, prefill: Layout, decode: Layout) -> float:
    """Seconds to ship one mean request's KV cache from a prefill to a decode replica.

    Each layer's KV moves from the prefill stage holding it to the decode stage holding it;
    stage pairs on different node pairs transfer in parallel, pairs sharing a node pair share
    its bandwidth. Inside one node min(tp_p, tp_d) GPU pairs copy in parallel over the intra link.
    """
    worst = 0.0
    for (node_p, node_d), (bytes_per_token, bandwidth) in kv_transfer_loads(cluster, prefill, decode).items():
        if bandwidth <= 0:
            return math.inf
        nbytes = cluster.workload.prompt.mean * bytes_per_token
        worst = max(worst, nbytes / bandwidth + cluster.node_latency(node_p, node_d))
    return worst


def kv_transfer_loads(cluster: Cluster, prefill: Layout, decode: Layout) -> dict[tuple[str, str], tuple[float, float]]:
    """(prefill node, decode node) → (KV bytes per prompt token crossing it, its bandwidth in bytes/s).

    Inside one node min(tp_p, tp_d) GPU pairs copy in parallel, multiplying the intra link's bandwidth.
    """
    per_layer = kv_bytes_per_token_layer(cluster)
    load: dict[tuple[str, str], float] = {}
    streams: dict[tuple[str, str], int] = {}
    for p in prefill.stages:
        node_p = cluster.gpu_by_id[p.gpus[0]].node
        for d in decode.stages:
            overlap = min(p.layer_end, d.layer_end) - max(p.layer_start, d.layer_start)
            if overlap <= 0:
                continue
            node_d = cluster.gpu_by_id[d.gpus[0]].node
            key = (node_p, node_d)
            load[key] = load.get(key, 0.0) + overlap * per_layer
            streams[key] = max(streams.get(key, 1), min(p.tp, d.tp))
    return {
        key: (nbytes, cluster.node_bandwidth(*key) * (streams[key] if key[0] == key[1] else 1))
        for key, nbytes in load.items()
    }


def kv_transfer_capacity(cluster: Cluster, prefill: Layout, decode: Layout) -> float:
    """Requests/s whose KV caches the links between the two replicas can carry.

    Bandwidth-bound: concurrent transfers overlap their latency, so latency counts in TTFT
    (kv_transfer_time), not here; this is also what the shared hubs of planner.kvnet assume.
    """
    worst = 0.0
    for bytes_per_token, bandwidth in kv_transfer_loads(cluster, prefill, decode).values():
        if bandwidth <= 0:
            return 0.0
        worst = max(worst, cluster.workload.prompt.mean * bytes_per_token / bandwidth)
    return 1.0 / worst if worst > 0 else 0.0


def check_model_fits(cluster: Cluster) -> None:
    """Raise InfeasibleError when even all GPUs together cannot hold the weights and one long request's KV."""
    need = cluster.model.total_params * cluster.dtype_bytes
    need += (
        (cluster.workload.prompt.upper + cluster.workload.output.upper)
        * cluster.model.layers
        * kv_bytes_per_token_layer(cluster)
    )
    have = sum(slot.gpu.memory for slot in cluster.gpus) * cluster.memory_utilization
    if have < need:
        raise InfeasibleError(
            f"{cluster.source}: model {cluster.model.name} needs {need / 1e9:.1f} GB for weights and one request's "
            f"KV cache, but all {len(cluster.gpus)} GPUs together offer {have / 1e9:.1f} GB "
            f"at gpu_memory_utilization {cluster.memory_utilization}.",
            hint="add GPUs, pick a smaller model, or use dtype fp8",
        )
