"""Phase "layouts": the best TP × PP layout of a GPU group for a role, with an uneven layer split.

Only layouts vLLM and the connector can run are enumerated (planner.scheduler.launchability): a TP
group sits on one node and one GPU type, every stage has the same valid TP size, a replica spanning
nodes has the same number of GPUs on each, and with a KV connector a decode replica has PP = 1.
PP stages may cross nodes and GPU types; layers are split unevenly so that the slowest stage is
as fast as possible while every stage fits its memory (weights, activations, KV working set).

Every role takes the highest-capacity layout (ties: the lower latency); with an SLO, the one with the
highest capacity *within* it (planner.costs.slo: queueing under Poisson load, TTFT with KV transfer,
TPOT with the batch cap), then the highest saturated capacity. The paper's "lowest-latency prefill
layout" costs throughput when prefill is the bottleneck; a TTFT SLO is the way to ask for latency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from planner.costs.layout import Layout, Stage
from planner.costs.memory import activation_bytes_per_gpu, kv_bytes_per_token_layer
from planner.costs.replica import DEFAULT_BATCHED_TOKENS
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, assess
from planner.scheduler.launchability import decode_pp_allowed, equal_per_node, pipeline_kv_allowed, valid_tp
from planner.types import Role


def node_parts(cluster: Cluster, gpus: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The group's GPUs by node, nodes in cluster order, GPUs in index order."""
    by_node: dict[str, list[str]] = {}
    for g in sorted(gpus, key=lambda g: (cluster.node_index[cluster.gpu_by_id[g].node], cluster.gpu_by_id[g].index)):
        by_node.setdefault(cluster.gpu_by_id[g].node, []).append(g)
    return list(by_node.items())


def group_shape(cluster: Cluster, parts: list[tuple[str, list[str]]]) -> tuple:
    """Everything the cost model reads about a group, without GPU or node names: per node part
    (GPU type, intra-node link, GPU count, NIC) and the links between consecutive parts. Two groups
    of one shape have the same best layout up to renaming GPUs (used to cache layouts)."""
    nodes = [cluster.node_by_name[name] for name, _ in parts]
    inside = tuple((n.gpu.key, n.intra_link.key, len(p), n.nic) for n, (_, p) in zip(nodes, parts))
    between = tuple(
        (cluster.node_bandwidth(a.name, b.name), cluster.node_latency(a.name, b.name)) for a, b in pairwise(nodes)
    )
    return inside, between


def split_layers(layers: int, per_layer_cost: Sequence[float], max_layers: Sequence[int]) -> list[int] | None:
    """Layers per stage minimising the slowest stage (cost_i × layers_i) under per-stage memory caps.

    The optimum bottleneck T is one of the values cost_i × k; binary search over T for the
    smallest with Σ min(⌊T / cost_i⌋, cap_i) ≥ layers, then trim the surplus from the slowest
    stages. Every stage keeps ≥ 1 layer. Returns None when the caps cannot hold the model.
    """
    stages = len(per_layer_cost)
    if any(cap < 1 for cap in max_layers) or sum(max_layers) < layers or stages > layers:
        return None

    def counts(bound: float) -> list[int]:
        return [max(1, min(math.floor(bound / c + 1e-9), cap)) for c, cap in zip(per_layer_cost, max_layers)]

    candidates = sorted({c * k for c in per_layer_cost for k in range(1, layers + 1)})
    low, high = 0, len(candidates) - 1
    while low < high:
        mid = (low + high) // 2
        if sum(counts(candidates[mid])) >= layers:
            high = mid
        else:
            low = mid + 1
    result = counts(candidates[low])
    surplus = sum(result) - layers
    for i in sorted(range(stages), key=lambda i: -per_layer_cost[i] * result[i]):
        take = min(surplus, result[i] - 1)
        result[i] -= take
        surplus -= take
    return result if surplus == 0 else None


def _stage_layer_cap(cluster: Cluster, stage_gpus: Sequence[str], role: Role, first: bool, last: bool) -> int:
    """How many layers fit on a stage with room for the role's KV working set per layer."""
    model, b = cluster.model, cluster.dtype_bytes
    tp = len(stage_gpus)
    gpu = cluster.gpu_by_id[stage_gpus[0]].gpu
    usable = gpu.memory * cluster.memory_utilization - activation_bytes_per_gpu(cluster, tp, DEFAULT_BATCHED_TOKENS)
    embedding = model.vocab * model.hidden * b / tp
    usable -= embedding * (int(first) + int(last and not (first and model.tie_embeddings)))
    workload = cluster.workload
    tokens = 2 * DEFAULT_BATCHED_TOKENS if role == "prefill" else 8 * (workload.prompt.mean + workload.decode_tokens)
    per_layer = (model.params_per_layer * b + tokens * kv_bytes_per_token_layer(cluster)) / tp
    return max(0, math.floor(usable / per_layer))


def _stage_cost(cluster: Cluster, stage_gpus: Sequence[str], role: Role) -> float:
    """Relative time per layer: prefill is compute-bound, decode memory-bound."""
    gpu = cluster.gpu_by_id[stage_gpus[0]].gpu
    if role == "prefill":
        return 1.0 / (len(stage_gpus) * gpu.flops(cluster.dtype) * gpu.compute_efficiency)
    return 1.0 / (len(stage_gpus) * gpu.memory_bandwidth * gpu.memory_efficiency)


def candidate_layouts(cluster: Cluster, gpus: Sequence[str], role: Role, launchable: bool) -> list[Layout]:
    """Every admissible layout of the group for the role (see module docstring)."""
    parts = node_parts(cluster, gpus)
    if launchable and not equal_per_node(len(p) for _, p in parts):
        return []
    layouts = []
    for tp in sorted({math.gcd(*(len(p) for _, p in parts))} | {1, 2, 4, 8, 16}):
        if not valid_tp(tp, cluster.model) or any(len(p) % tp for _, p in parts):
            continue
        stage_gpus = [tuple(p[i : i + tp]) for _, p in parts for i in range(0, len(p), tp)]
        if not decode_pp_allowed(role, len(stage_gpus), launchable):
            continue
        if not pipeline_kv_allowed(len(stage_gpus), cluster.model.kv_layout, launchable):
            continue
        n = len(stage_gpus)
        caps = [_stage_layer_cap(cluster, s, role, i == 0, i == n - 1) for i, s in enumerate(stage_gpus)]
        split = split_layers(cluster.model.layers, [_stage_cost(cluster, s, role) for s in stage_gpus], caps)
        if split is None:
            continue
        bounds = [0]
        for count in split:
            bounds.append(bounds[-1] + count)
        layouts.append(Layout(tuple(Stage(s, a, b) for s, a, b in zip(stage_gpus, bounds, bounds[1:]))))
    return layouts


def best_assessment(cluster: Cluster, gpus: Sequence[str], role: Role, launchable: bool) -> Assessment | None:
    """The layout the group should run in this role, assessed; None when no layout fits."""
    options = [
        a for layout in candidate_layouts(cluster, gpus, role, launchable) if (a := assess(cluster, role, layout))
    ]
    if cluster.slo is not None:  # serve within the SLO first
        options = [a for a in options if (a.goodput_rps or 0.0) > 0.0]
        return max(options, key=lambda a: (a.goodput_rps, a.capacity_rps, -a.latency_s, -a.layout.tp), default=None)
    return max(options, key=lambda a: (a.capacity_rps, -a.latency_s, -a.layout.tp), default=None)
