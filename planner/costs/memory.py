"""Memory of a replica: weights per GPU, activation workspace, and the KV cache that fits beside them.

Notation as in planner.costs.replica. A GPU may use `memory × gpu_memory_utilization`; a stage's
GPUs each hold 1/tp of its layers' weights (plus the embedding on the first stage and the LM head on
the last), an activation workspace sized for `max_num_batched_tokens`, and KV cache in the rest.
When tp exceeds the KV heads, vLLM replicates each KV head, so the cache takes more room.
All sizes in bytes, capacities in tokens.
"""

from __future__ import annotations

import math

from planner.costs.layout import Layout, Stage
from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster

# vLLM sizes its activation workspace for max_num_batched_tokens; per token it keeps roughly
# the residual stream, attention output and the MLP's intermediate activations alive.
ACTIVATION_WIDTH_HIDDEN = 4
ACTIVATION_WIDTH_FFN = 2


def kv_bytes_per_token_layer(cluster: Cluster) -> float:
    return cluster.model.kv_elements_per_token_layer() * cluster.dtype_bytes


def kv_replication(cluster: Cluster, tp: int) -> float:
    """How many times the KV cache is stored across a TP group: 1 unless tp > KV heads, when vLLM
    replicates each KV head on tp / kv_heads GPUs (each GPU holds ⌈kv_heads / tp⌉ heads)."""
    kv_heads = cluster.model.kv_heads
    return tp * math.ceil(kv_heads / tp) / kv_heads


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
    return min(
        stage_kv_tokens(cluster, stage, i == 0, i == layout.pp - 1, batched_tokens)
        for i, stage in enumerate(layout.stages)
    )


def stage_kv_tokens(cluster: Cluster, stage: Stage, first: bool, last: bool, batched_tokens: int) -> float:
    """Tokens of KV cache one stage can hold for its layers (first/last: it also holds the embedding/LM head)."""
    gpu = cluster.gpu_by_id[stage.gpus[0]].gpu
    usable = gpu.memory * cluster.memory_utilization
    used = stage_weight_bytes_per_gpu(cluster, stage, first, last)
    used += activation_bytes_per_gpu(cluster, stage.tp, batched_tokens)
    stored = kv_bytes_per_token_layer(cluster) * kv_replication(cluster, stage.tp) / stage.tp  # per GPU
    return (usable - used) / (stored * max(stage.layers, 1))


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
