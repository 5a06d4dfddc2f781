"""Baseline planners the paper compares against, each emitting the same Plan format as ours.

All share one signature, `plan_xxx(cluster, *, seed, time_limit) -> Plan`, and are chosen by
name from BASELINES, so `hexplan simulate / compare / diff` work on their plans unchanged.
Every figure is scored by planner.scheduler.assess and planner.plans.assemble, never estimated here.

- distserve: DistServe-style. Homogeneous only: for each GPU type, that type's GPUs (the paper's
  same-budget comparison uses a separate homogeneous cluster file); disaggregated, one uniform
  prefill layout (TP × PP) and one uniform decode layout (TP, PP = 1 for NIXL); replica counts
  chosen to balance the two phases; GPUs taken in file order (no network awareness). The best
  type wins.
- hexgen: HexGen-style. Heterogeneous, colocated prefill + decode replicas with asymmetric
  pipelines: stages of different GPU types, layers split in proportion to stage speed or memory.
  Seeded random restarts over TP choices, group orders and where pipelines end (a pipeline that holds
  the model closes with probability CLOSE_CHAIN, else takes the next group too). HexGen searches with a
  genetic algorithm; this keeps its plan space, not its search.
- vllm: vLLM-style. Colocated replicas, TP inside one node, PP = 1, one TP size per GPU type (the
  one with the most capacity per node); every node that can hold the model serves.

The time limit caps the search; on the example clusters every search finishes well within it,
so plans are a function of (cluster, seed) only.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from planner import __version__
from planner.costs.layout import Layout, Stage
from planner.errors import InfeasibleError, InputError
from planner.inputs.problem import Cluster, Node
from planner.plans.assemble import assemble
from planner.plans.schema import Plan, SolverInfo
from planner.scheduler.assess import Assessment, assess
from planner.scheduler.launchability import valid_tp
from planner.scheduler.layouts import split_layers
from planner.scheduler.network import plan_flow
from planner.types import Role

Baseline = Callable[..., Plan]
TP_SIZES = (1, 2, 4, 8)
MAX_PP = 8
HEXGEN_TRIALS = 48
CLOSE_CHAIN = 0.5  # chance a HexGen trial closes a pipeline as soon as it holds the model (else it grows)


def tp_sizes(cluster: Cluster, node: Node) -> list[int]:
    """TP sizes a node admits: fit in the node and split the model's heads (launchability.valid_tp)."""
    return [t for t in TP_SIZES if t <= node.count and valid_tp(t, cluster.model)]


def _groups(node: Node, tp: int) -> list[tuple[str, ...]]:
    return [tuple(f"{node.name}/{i + j}" for j in range(tp)) for i in range(0, node.count - tp + 1, tp)]


def _layout(cluster: Cluster, groups: Sequence[tuple[str, ...]], weights: Sequence[float]) -> Layout:
    """Stages with layers in proportion to `weights` (stage speed or memory), no memory caps."""
    layers = cluster.model.layers
    counts = split_layers(layers, [1.0 / w for w in weights], [layers] * len(weights))
    if counts is None:
        raise InfeasibleError(f"cannot split {layers} layers into {len(weights)} pipeline stages.")
    bounds = itertools.pairwise(itertools.accumulate(counts, initial=0))
    return Layout(tuple(Stage(g, a, b) for g, (a, b) in zip(groups, bounds, strict=True)))


def _finish(cluster: Cluster, name: str, assessments: list[Assessment], seed: int, time_limit: float) -> Plan:
    if not assessments:
        raise InfeasibleError(
            f"{cluster.source}: the {name} baseline finds no replica layout that holds {cluster.model.name} here.",
            hint="this baseline's plan space is narrower than hexgen2's; compare with the others",
        )
    solver = SolverInfo(name=f"{name}-style", version=__version__, seed=seed, time_limit_s=time_limit)
    return assemble(cluster, assessments, solver)


# ----------------------------------------------------------------------------- DistServe-style


@dataclass(frozen=True)
class _Shape:
    tp: int
    pp: int

    @property
    def gpus(self) -> int:
        return self.tp * self.pp


def _allocate(nodes: Sequence[Node], shapes: Sequence[_Shape]) -> list[list[tuple[str, ...]]] | None:
    """TP groups for each replica shape, first fit over the nodes in file order; None if they do not fit."""
    free = {node.name: 0 for node in nodes}  # next free index per node
    placed = []
    for shape in shapes:
        groups = []
        for _ in range(shape.pp):
            node = next((n for n in nodes if n.count - free[n.name] >= shape.tp), None)
            if node is None:
                return None
            start = free[node.name]
            groups.append(tuple(f"{node.name}/{start + j}" for j in range(shape.tp)))
            free[node.name] += shape.tp
        placed.append(groups)
    return placed


def _homogeneous_plan(
    cluster: Cluster, nodes: Sequence[Node], prefill: _Shape, decode: _Shape
) -> list[Assessment] | None:
    """Balance n_p·P against n_d·D on one GPU type; assessments of the placed replicas, or None."""
    total = sum(n.count for n in nodes)
    probe = _allocate(nodes, [prefill])
    probe_d = _allocate(nodes, [decode])
    if probe is None or probe_d is None:
        return None
    p = assess(cluster, "prefill", _layout(cluster, probe[0], [1.0] * prefill.pp))
    d = assess(cluster, "decode", _layout(cluster, probe_d[0], [1.0]))
    if p is None or d is None:
        return None
    best: tuple[float, int, int] | None = None
    for n_p in range(1, total // prefill.gpus + 1):
        n_d = (total - n_p * prefill.gpus) // decode.gpus
        if n_d >= 1:
            rate = min(n_p * p.capacity_rps, n_d * d.capacity_rps)
            if best is None or rate > best[0] + 1e-12:
                best = (rate, n_p, n_d)
    if best is None:
        return None
    _, n_p, n_d = best
    while n_p >= 1 and n_d >= 1:  # first fit may strand GPUs: drop a replica until the shapes fit
        placed = _allocate(nodes, [prefill] * n_p + [decode] * n_d)
        if placed is not None:
            roles: list[Role] = ["prefill"] * n_p + ["decode"] * n_d
            out = [assess(cluster, r, _layout(cluster, g, [1.0] * len(g))) for r, g in zip(roles, placed, strict=True)]
            return [a for a in out if a is not None]
        if n_p * p.capacity_rps > n_d * d.capacity_rps:
            n_p -= 1
        else:
            n_d -= 1
    return None


def plan_distserve(cluster: Cluster, *, seed: int = 0, time_limit: float = 30.0) -> Plan:
    """DistServe-style plan: best single-GPU-type disaggregated deployment (see module docstring)."""
    deadline = time.monotonic() + time_limit
    best: tuple[float, list[Assessment]] | None = None
    for gpu_type in sorted({node.gpu.key for node in cluster.nodes}):
        nodes = [node for node in cluster.nodes if node.gpu.key == gpu_type]
        tps = sorted(set.intersection(*(set(tp_sizes(cluster, node)) for node in nodes)))
        for tp_p in tps:
            for pp_p in range(1, MAX_PP + 1):
                for tp_d in tps:
                    if time.monotonic() > deadline:
                        break
                    chosen = _homogeneous_plan(cluster, nodes, _Shape(tp_p, pp_p), _Shape(tp_d, 1))
                    if not chosen:
                        continue
                    value = plan_flow(cluster, chosen, launchable=True).value
                    if best is None or value > best[0] + 1e-9:
                        best = (value, chosen)
    return _finish(cluster, "distserve", best[1] if best else [], seed, time_limit)


# ----------------------------------------------------------------------------- HexGen-style


def _stage_weights(cluster: Cluster, groups: Sequence[tuple[str, ...]]) -> list[list[float]]:
    """Two layer splits HexGen considers: by compute (TP × peak FLOP/s) and by memory (TP × GPU memory)."""
    gpus = [cluster.gpu_by_id[g[0]].gpu for g in groups]
    return [
        [len(g) * gpu.flops(cluster.dtype) for g, gpu in zip(groups, gpus, strict=True)],
        [len(g) * gpu.memory for g, gpu in zip(groups, gpus, strict=True)],
    ]


Assessed = dict[Layout, Assessment | None]  # one plan_hexgen call's assessments: trials repeat layouts


def _best_colocated(cluster: Cluster, groups: Sequence[tuple[str, ...]], seen: Assessed) -> Assessment | None:
    candidates = []
    for weights in _stage_weights(cluster, groups):
        layout = _layout(cluster, groups, weights)
        if layout not in seen:
            seen[layout] = assess(cluster, "colocated", layout)
        candidates.append(seen[layout])
    fitting = [a for a in candidates if a is not None]
    return max(fitting, key=lambda a: a.capacity_rps, default=None)


def _hexgen_trial(cluster: Cluster, rng: np.random.Generator, seen: Assessed) -> list[Assessment]:
    """Random TP per node, then chain same-TP groups (fastest first, shuffled within a type) into pipelines."""
    by_tp: dict[int, list[tuple[float, float, tuple[str, ...]]]] = {}
    for node in cluster.nodes:
        sizes = tp_sizes(cluster, node)
        if not sizes:
            continue
        tp = int(rng.choice(sizes))
        speed = node.gpu.flops(cluster.dtype)
        for group in _groups(node, tp):
            by_tp.setdefault(tp, []).append((-speed, float(rng.random()), group))
    replicas = []
    for tp in sorted(by_tp):
        chain: list[tuple[str, ...]] = []
        pending: Assessment | None = None  # the chain so far, if it already holds the model
        for _, _, group in sorted(by_tp[tp]):
            chain.append(group)
            replica = _best_colocated(cluster, chain, seen)
            if replica is not None and (len(chain) == MAX_PP or rng.random() < CLOSE_CHAIN):
                replicas.append(replica)
                chain, pending = [], None
            elif replica is not None:
                pending = replica  # keep growing the pipeline this time (HexGen's asymmetric pipelines)
            elif len(chain) == MAX_PP:
                chain, pending = [], None
        if pending is not None:
            replicas.append(pending)
    return replicas


def plan_hexgen(cluster: Cluster, *, seed: int = 0, time_limit: float = 30.0) -> Plan:
    """HexGen-style plan: heterogeneous colocated pipelines (see module docstring)."""
    deadline = time.monotonic() + time_limit
    rng = np.random.default_rng(seed)
    best: tuple[float, list[Assessment]] = (0.0, [])
    seen: Assessed = {}
    for _ in range(HEXGEN_TRIALS):
        if time.monotonic() > deadline:
            break
        replicas = _hexgen_trial(cluster, rng, seen)
        total = sum(a.capacity_rps for a in replicas)
        if total > best[0] + 1e-9:
            best = (total, replicas)
    return _finish(cluster, "hexgen", best[1], seed, time_limit)


# ----------------------------------------------------------------------------- vLLM-style


def plan_vllm(cluster: Cluster, *, seed: int = 0, time_limit: float = 30.0) -> Plan:
    """vLLM-style plan: colocated TP-in-a-node replicas, one TP size per GPU type (see module docstring)."""
    chosen_tp: dict[str, int] = {}
    for node in cluster.nodes:
        if node.gpu.key in chosen_tp:
            continue
        best_tp, best_rate = 0, 0.0
        for tp in tp_sizes(cluster, node):
            replica = assess(cluster, "colocated", _layout(cluster, _groups(node, tp)[:1], [1.0]))
            rate = replica.capacity_rps * (node.count // tp) if replica else 0.0
            if rate > best_rate + 1e-12:
                best_tp, best_rate = tp, rate
        chosen_tp[node.gpu.key] = best_tp
    replicas = []
    for node in cluster.nodes:
        tp = chosen_tp[node.gpu.key]
        for group in _groups(node, tp) if tp else []:
            replica = assess(cluster, "colocated", _layout(cluster, [group], [1.0]))
            if replica is not None:
                replicas.append(replica)
    return _finish(cluster, "vllm", replicas, seed, time_limit)


BASELINES: dict[str, Baseline] = {"distserve": plan_distserve, "hexgen": plan_hexgen, "vllm": plan_vllm}


def baseline(name: str) -> Baseline:
    """The baseline planner called `name`; InputError listing the known names otherwise."""
    try:
        return BASELINES[name]
    except KeyError:
        raise InputError(
            f"--baselines: unknown baseline {name!r}; known: {', '.join(BASELINES)}.",
            hint="pass a comma-separated subset, e.g. --baselines distserve,vllm",
        ) from None
