"""Every layout a group can run in a role, for the exact reference planner (planner.reference.exact).

Its own enumeration, independent of the scheduler's layout search: every TP size the launch rules
admit (planner.scheduler.launchability), every pipeline order of the group's nodes, every split of
the layers over the stages. What the max-flow reads of a prefill replica is its capacity, its TP
size and how many layers each node holds (each layer's KV leaves from the node holding it; a decode
replica has PP = 1 with a KV connector). So among the layouts with the same TP and the same layers
per node only the fastest can be in an optimum (the flow is monotone in capacity), and the oracle
keeps exactly those, one *option* per (TP, layers per node).

Finding the fastest without listing every split: a prefill pipeline's period is the slowest of its
stages and PP hops, and each stage's time grows with its layer count, so per node the best split of
m layers over that node's stages is a small dynamic program over (stage, layers so far), solved once
for all m; then numpy evaluates every vector of layers per node for every node order. Stage times
and memory come from the cost model (prefill_stage_time, stage_kv_tokens, hop_time); each option's
layout is then assessed by `assess` like any plan, and tests compare the decomposition with brute
force. Needs: no TTFT SLO (a latency cap would break "fastest dominates"; `exact_optimum` checks).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property

import numpy as np

from planner.costs.layout import Layout, Stage
from planner.costs.memory import stage_kv_tokens
from planner.costs.replica import hop_time, kv_need, prefill_batch_seqs, prefill_stage_time, stage_hardware
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, assess
from planner.scheduler.launchability import pipeline_kv_allowed, valid_tp

OPTIONS_LIMIT = 300_000  # layer vectors × node orders per group and TP; beyond it the oracle gives up


class TooLarge(Exception):
    """The exhaustive enumeration is out of reach for this instance (the oracle never guesses)."""


@dataclass(frozen=True)
class Option:
    """A prefill layout class: TP size, node order, layers per node (in that order), and its capacity."""

    group: tuple[str, ...]
    tp: int
    order: tuple[str, ...]
    per_node: tuple[int, ...]
    capacity_rps: float


def by_node(cluster: Cluster, group: Sequence[str]) -> dict[str, list[str]]:
    """The group's GPUs per node (cluster node order, GPUs by index)."""
    found: dict[str, list[str]] = {}
    for g in sorted(group, key=lambda g: (cluster.node_index[cluster.gpu_by_id[g].node], cluster.gpu_by_id[g].index)):
        found.setdefault(cluster.gpu_by_id[g].node, []).append(g)
    return found


def tp_sizes(cluster: Cluster, parts: dict[str, list[str]], launchable: bool) -> list[int]:
    """TP sizes of a prefill pipeline over these node shares that the launch rules admit."""
    counts = [len(p) for p in parts.values()]
    if launchable and len(set(counts)) > 1:
        return []  # vLLM runs the same number of GPUs on every node of a replica
    return [
        tp
        for tp in range(1, min(counts) + 1)
        if all(c % tp == 0 for c in counts)
        and valid_tp(tp, cluster.model)
        and pipeline_kv_allowed(sum(counts) // tp, cluster.model.kv_layout, launchable)
    ]


@dataclass
class _Pipeline:
    """Stage times of one group for one TP size: per node and position flags, per layer count."""

    cluster: Cluster
    parts: dict[str, list[str]]
    tp: int
    tables: dict = field(default_factory=dict)

    @cached_property
    def n_seqs(self) -> int:
        return prefill_batch_seqs(self.cluster)

    @cached_property
    def batched(self) -> int:
        return kv_need(self.cluster, "prefill")[0]

    def stages(self, node: str) -> list[tuple[str, ...]]:
        gpus = self.parts[node]
        return [tuple(gpus[i : i + self.tp]) for i in range(0, len(gpus), self.tp)]

    def stage_time(self, gpus: tuple[str, ...], layers: int, first: bool, last: bool) -> float:
        """Seconds per batch of the stage holding `layers` layers; inf when they do not fit its memory."""
        stage = Stage(gpus, 0, layers)
        if stage_kv_tokens(self.cluster, stage, first, last, self.batched) < kv_need(self.cluster, "prefill")[1]:
            return math.inf
        return prefill_stage_time(self.cluster, stage, stage_hardware(self.cluster, stage), self.n_seqs, last)

    def node_table(self, node: str, first: bool, last: bool) -> tuple[np.ndarray, list[list[int]]]:
        """best[m] = the smallest slowest-stage time of m layers over the node's stages, and the split."""
        if (node, first, last) not in self.tables:
            self.tables[(node, first, last)] = self._node_table(node, first, last)
        return self.tables[(node, first, last)]

    def _node_table(self, node: str, first: bool, last: bool) -> tuple[np.ndarray, list[list[int]]]:
        layers = self.cluster.model.layers
        stages = self.stages(node)
        best = np.full(layers + 1, math.inf)
        split: list[list[int]] = [[] for _ in range(layers + 1)]
        for m in range(1, layers + 1):  # one stage
            best[m] = self.stage_time(stages[0], m, first, last and len(stages) == 1)
            split[m] = [m]
        for j in range(1, len(stages)):
            times = [self.stage_time(stages[j], n, False, last and j == len(stages) - 1) for n in range(layers + 1)]
            new, new_split = np.full(layers + 1, math.inf), [[] for _ in range(layers + 1)]
            for m in range(j + 1, layers + 1):
                for n in range(1, m - j + 1):
                    value = max(best[m - n], times[n])
                    if value < new[m]:
                        new[m], new_split[m] = value, [*split[m - n], n]
            best, split = new, new_split
        return best, split

    def hops(self, order: Sequence[str]) -> float:
        """The slowest PP hop of the pipeline in this node order (inside nodes too)."""
        stages = [Stage(g, 0, 1) for node in order for g in self.stages(node)]
        tokens = self.n_seqs * self.cluster.workload.prompt.mean
        return max((hop_time(self.cluster, a, b, tokens) for a, b in itertools.pairwise(stages)), default=0.0)


@cache
def _pipeline(cluster: Cluster, group: tuple[str, ...], tp: int) -> _Pipeline:
    """One pipeline model per (cluster, group, TP), its tables kept (clusters compare by identity)."""
    return _Pipeline(cluster, by_node(cluster, group), tp)


def compositions(total: int, minimums: Sequence[int]) -> np.ndarray:
    """Every vector of len(minimums) integers ≥ the minimums summing to `total` (rows of an array)."""
    k, spare = len(minimums), total - sum(minimums)
    if spare < 0:
        return np.zeros((0, k), dtype=np.int64)
    if k == 1:
        return np.array([[total]], dtype=np.int64)
    count = math.comb(spare + k - 1, k - 1)
    if count > OPTIONS_LIMIT:
        raise TooLarge(f"{count} layer vectors")
    cuts = np.array(list(itertools.combinations(range(spare + k - 1), k - 1)), dtype=np.int64)
    edges = np.concatenate([np.full((len(cuts), 1), -1), cuts, np.full((len(cuts), 1), spare + k - 1)], axis=1)
    return np.diff(edges, axis=1) - 1 + np.array(minimums, dtype=np.int64)


def prefill_options(cluster: Cluster, group: Sequence[str], launchable: bool) -> list[Option]:
    """The fastest layout for every (TP, layers per node) of the group as a prefill replica, fastest first.

    Long because it is the oracle's whole search for one group: TP sizes × node orders × layer vectors."""
    parts = by_node(cluster, group)
    nodes = list(parts)
    best: dict[tuple[int, tuple[int, ...]], tuple[float, tuple[str, ...]]] = {}
    for tp in tp_sizes(cluster, parts, launchable):
        pipe = _pipeline(cluster, tuple(sorted(group)), tp)
        grid = compositions(cluster.model.layers, [len(pipe.stages(n)) for n in nodes])
        if len(grid) * math.factorial(len(nodes)) > OPTIONS_LIMIT:
            raise TooLarge(f"{len(grid)} layer vectors × {math.factorial(len(nodes))} node orders")
        tables = {
            (n, f, la): pipe.node_table(n, f, la)[0] for n in nodes for f in (False, True) for la in (False, True)
        }
        period = np.full(len(grid), math.inf)
        chosen = np.zeros(len(grid), dtype=np.int64)
        orders = list(itertools.permutations(nodes))
        for o, order in enumerate(orders):
            k = len(order)
            times = np.full(len(grid), pipe.hops(order))
            for position, node in enumerate(order):
                table = tables[(node, position == 0, position == k - 1)]
                times = np.maximum(times, table[grid[:, nodes.index(node)]])
            better = times < period
            period[better], chosen[better] = times[better], o
        for row, value, o in zip(grid, period, chosen):
            if np.isfinite(value):
                best[(tp, tuple(int(x) for x in row))] = (float(value), orders[o])
    options = []
    for (tp, per_node_cluster_order), (value, order) in best.items():
        per_node = tuple(per_node_cluster_order[nodes.index(n)] for n in order)
        capacity = _pipeline(cluster, tuple(sorted(group)), tp).n_seqs / value
        options.append(Option(tuple(sorted(group)), tp, order, per_node, capacity))
    options.sort(key=lambda o: (-o.capacity_rps, o.tp, o.order, o.per_node))
    return options


def option_layout(cluster: Cluster, option: Option) -> Layout:
    """The layout of an option: each node's layers split over its stages by the dynamic program."""
    pipe = _pipeline(cluster, option.group, option.tp)
    stages, k = [], len(option.order)
    start = 0
    for position, (node, m) in enumerate(zip(option.order, option.per_node)):
        _, split = pipe.node_table(node, position == 0, position == k - 1)
        for gpus, n in zip(pipe.stages(node), split[m]):
            stages.append(Stage(gpus, start, start + n))
            start += n
    return Layout(tuple(stages))


def option_assessment(cluster: Cluster, option: Option) -> Assessment:
    """assess() of the option's layout; its capacity must be the one the decomposition predicted."""
    found = assess(cluster, "prefill", option_layout(cluster, option))
    if found is None or not math.isclose(found.capacity_rps, option.capacity_rps, rel_tol=1e-9):
        raise AssertionError(f"oracle decomposition disagrees with assess() for {option}: {found}")
    return found


def decode_options(cluster: Cluster, group: Sequence[str], launchable: bool) -> list[Assessment]:
    """Every layout of the group as a decode replica, assessed. With a KV connector decode has PP = 1:
    one node, one TP group of all its GPUs. Without one (cost-model exercises only) the scheduler's
    own candidate layouts stand in: that mode of the oracle is not exhaustive."""
    parts = by_node(cluster, group)
    if launchable:
        if len(parts) != 1 or not valid_tp(len(group), cluster.model):
            return []
        gpus = tuple(next(iter(parts.values())))
        found = assess(cluster, "decode", Layout((Stage(gpus, 0, cluster.model.layers),)))
        return [found] if found is not None else []
    from planner.scheduler.layouts import candidate_layouts

    layouts = candidate_layouts(cluster, group, "decode", launchable)
    return [a for layout in layouts if (a := assess(cluster, "decode", layout)) is not None]
