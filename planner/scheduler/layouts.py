"""Phase "layouts": the best TP × PP layout of a GPU group for a role, with an uneven layer split.

Only layouts vLLM and the connector can run are enumerated (planner.scheduler.launchability): a TP
group sits on one node and one GPU type, every stage has the same valid TP size, a replica spanning
nodes has the same number of GPUs on each, and with a KV connector a decode replica has PP = 1.
PP stages may cross nodes and GPU types, in any order of the nodes (each node's stages consecutive);
layers are split unevenly so that the slowest stage is as fast as possible while every stage fits its
memory (weights, activations, KV working set). That is the *default* layout of a group; the search
also moves layers between stages and reorders them (planner.scheduler.variants) when the KV transfers
a split causes — every stage sends its own layers' KV from its own node — cost more than capacity.

Every role takes the highest-capacity layout (ties: the lower latency); with an SLO, the one with the
highest capacity *within* it (planner.costs.slo: queueing under Poisson load, TTFT with KV transfer,
TPOT with the batch cap), then the highest saturated capacity. The paper's "lowest-latency prefill
layout" costs throughput when prefill is the bottleneck; a TTFT SLO is the way to ask for latency.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

from planner.costs.layout import Layout, Stage
from planner.costs.memory import stage_kv_tokens
from planner.costs.replica import kv_need
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, assess
from planner.scheduler.launchability import decode_pp_allowed, equal_per_node, pipeline_kv_allowed, valid_tp
from planner.scheduler.splits import min_max_split, prefill_stage_times
from planner.types import Role

MAX_ORDERED = 4  # groups on up to this many nodes try every pipeline order of their nodes


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
    """How many layers a stage can hold while the replica can still run in the role (costs.replica.kv_need)."""
    return _layer_cap(cluster, cluster.gpu_by_id[stage_gpus[0]].gpu.key, len(stage_gpus), role, first, last)


@lru_cache(maxsize=4096)
def _layer_cap(cluster: Cluster, gpu_key: str, tp: int, role: Role, first: bool, last: bool) -> int:
    """_stage_layer_cap for any stage of `tp` GPUs of this type (clusters compare by identity): the stage's
    KV room shrinks as its layers grow, so binary search on the layer count."""
    batched, need = kv_need(cluster, role)
    gpus = (next(slot.id for slot in cluster.gpus if slot.gpu.key == gpu_key),) * tp

    def fits(layers: int) -> bool:
        return stage_kv_tokens(cluster, Stage(gpus, 0, layers), first, last, batched) >= need

    low, high = 0, cluster.model.layers  # fits(low) holds (vacuously for 0); find the largest
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _stage_cost(cluster: Cluster, stage_gpus: Sequence[str], role: Role) -> float:
    """Relative time per layer: prefill is compute-bound, decode memory-bound."""
    gpu = cluster.gpu_by_id[stage_gpus[0]].gpu
    if role == "prefill":
        return 1.0 / (len(stage_gpus) * gpu.flops(cluster.dtype) * gpu.compute_efficiency)
    return 1.0 / (len(stage_gpus) * gpu.memory_bandwidth * gpu.memory_efficiency)


def tp_options(cluster: Cluster, parts: Sequence[tuple[str, Sequence[str]]], role: Role, launchable: bool) -> list[int]:
    """TP sizes the group admits in the role: valid for the model, dividing every node's share, and
    with a KV connector giving a decode replica one stage and a pipeline only to full-attention models."""
    if launchable and not equal_per_node(len(p) for _, p in parts):
        return []
    options = []
    for tp in sorted({math.gcd(*(len(p) for _, p in parts))} | {1, 2, 4, 8, 16}):
        if not valid_tp(tp, cluster.model) or any(len(p) % tp for _, p in parts):
            continue
        stages = sum(len(p) // tp for _, p in parts)
        if decode_pp_allowed(role, stages, launchable) and pipeline_kv_allowed(
            stages, cluster.model.kv_layout, launchable
        ):
            options.append(tp)
    return options


def stage_groups(parts: Sequence[tuple[str, Sequence[str]]], tp: int) -> list[tuple[str, ...]]:
    """The TP groups of the pipeline: each node's GPUs in index order, chunked by tp, nodes in `parts` order."""
    return [tuple(p[i : i + tp]) for _, p in parts for i in range(0, len(p), tp)]


def build_layout(stage_gpus: Sequence[tuple[str, ...]], split: Sequence[int]) -> Layout:
    bounds = [0]
    for count in split:
        bounds.append(bounds[-1] + count)
    return Layout(tuple(Stage(s, a, b) for s, a, b in zip(stage_gpus, bounds, bounds[1:])))


def balanced_split(
    cluster: Cluster, stage_gpus: Sequence[tuple[str, ...]], role: Role, favour: str | None = None
) -> list[int] | None:
    """The min-max layer split of these stages: for prefill from the cost model's stage times
    (planner.scheduler.splits), for decode by split_layers' per-layer proxy; with `favour`, the stages on
    that node count as nearly free, so they take every layer their memory holds (a split that keeps KV
    local)."""
    n = len(stage_gpus)
    caps = [_stage_layer_cap(cluster, s, role, i == 0, i == n - 1) for i, s in enumerate(stage_gpus)]
    if role == "prefill" and favour is None:
        return min_max_split(prefill_stage_times(cluster, stage_gpus, caps), cluster.model.layers)
    costs = [_stage_cost(cluster, s, role) for s in stage_gpus]
    if favour is not None:
        costs = [c * (1e-6 if cluster.gpu_by_id[s[0]].node == favour else 1.0) for c, s in zip(costs, stage_gpus)]
    return split_layers(cluster.model.layers, costs, caps)


def node_orders(parts: Sequence[tuple[str, Sequence[str]]]) -> list[list[tuple[str, Sequence[str]]]]:
    """Pipeline orders of the group's nodes worth trying: all of them up to MAX_ORDERED nodes, else the
    cluster order and its reverse (a stage order changes which links the PP hops cross and which
    stage holds the embedding and the LM head)."""
    if len(parts) <= MAX_ORDERED:
        return [list(order) for order in itertools.permutations(parts)]
    return [list(parts), list(reversed(parts))]


def candidate_layouts(cluster: Cluster, gpus: Sequence[str], role: Role, launchable: bool) -> list[Layout]:
    """Every admissible layout of the group for the role (see module docstring): each TP size and
    node order, with the min-max layer split."""
    parts = node_parts(cluster, gpus)
    layouts = []
    for tp in tp_options(cluster, parts, role, launchable):
        for order in node_orders(parts):
            stage_gpus = stage_groups(order, tp)
            split = balanced_split(cluster, stage_gpus, role)
            if split is not None:
                layouts.append(build_layout(stage_gpus, split))
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
