"""The resolved cluster: nodes, GPUs, and the bandwidth between any two of them.

Why a separate record from the spec: the planner's algorithms need SI numbers and O(1)
bandwidth look-ups, not validation machinery. Bandwidth between two GPUs is the intra-node
link inside a node, else the bottleneck of the two NICs and the network link between their
nodes (0 when the network has no link).

Why the network is kept as rules (a default link, a cross-zone link, per-pair overrides) and
never as all pairs: a pair's link is found in O(1), so resolving and checking a cluster costs
O(nodes + overrides) — 20,000 nodes are 20,000 entries, not 200 million pairs. The dense
node×node matrix exists only when the partitioner asks for it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import networkx as nx
import numpy as np

from planner.inputs.catalog import DTYPE_BYTES, GpuProfile, LinkProfile, ModelProfile
from planner.inputs.workload import Workload
from planner.units import format_duration


@dataclass(frozen=True)
class Slo:
    """Service-level objectives: a request meets them when TTFT ≤ ttft and TPOT ≤ tpot (an unset one does
    not constrain); the plan must serve its rate with at least `attainment` of requests meeting both."""

    ttft: float | None
    tpot: float | None
    attainment: float = 0.9

    def describe(self) -> str:
        """'ttft ≤ 1s, tpot ≤ 100ms, attainment 90%': how every command prints the SLO it used."""
        parts = [f"ttft ≤ {format_duration(self.ttft)}"] if self.ttft is not None else []
        parts += [f"tpot ≤ {format_duration(self.tpot)}"] if self.tpot is not None else []
        return ", ".join([*parts, f"attainment {self.attainment * 100:g}%"])


@dataclass(frozen=True)
class NodeLink:
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class Network:
    """How nodes reach each other: `default` between nodes of one zone (and across zones unless
    `cross_zone` is set), `cross_zone` between zones, and `overrides` for named pairs, keyed (a, b)
    with a < b. A pair with no rule and no override has no link."""

    default: NodeLink | None = None
    cross_zone: NodeLink | None = None
    overrides: Mapping[tuple[str, str], NodeLink] = field(default_factory=dict)

    def rule(self, same_zone: bool) -> NodeLink | None:
        return self.default if same_zone else (self.cross_zone or self.default)

    def connects_every_pair(self, zones: int) -> bool:
        """True when the rules alone join every node to every other (directly or, for cross_zone
        alone, through a node of another zone)."""
        return self.default is not None or (self.cross_zone is not None and zones > 1)


@dataclass(frozen=True)
class Node:
    name: str
    gpu: GpuProfile
    count: int
    intra_link: LinkProfile
    nic: float
    price_per_gpu_hour: float
    zone: str = "default"


@dataclass(frozen=True)
class GpuSlot:
    """One physical GPU: `id` is 'node/index', the name plans and the launcher use."""

    id: str
    node: str
    index: int
    gpu: GpuProfile


def gpu_id(node: str, index: int) -> str:
    return f"{node}/{index}"


@dataclass(frozen=True, eq=False)
class Cluster:
    source: Path
    sha256: str
    model: ModelProfile
    dtype: str
    workload: Workload
    slo: Slo | None  # None: no SLO, so goodput is not defined
    objective: str | None  # None: goodput when there is an SLO, else throughput (see `default_objective`)
    memory_utilization: float
    nodes: tuple[Node, ...]
    network: Network = field(repr=False)

    @property
    def slo_ttft(self) -> float | None:
        return self.slo.ttft if self.slo is not None else None

    @property
    def slo_tpot(self) -> float | None:
        return self.slo.tpot if self.slo is not None else None

    @property
    def default_objective(self) -> str:
        """The cluster file's objective, else goodput when SLOs are given, else throughput."""
        return self.objective or ("goodput" if self.slo is not None else "throughput")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @cached_property
    def node_index(self) -> dict[str, int]:
        return {node.name: i for i, node in enumerate(self.nodes)}

    @cached_property
    def node_by_name(self) -> dict[str, Node]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def gpus(self) -> tuple[GpuSlot, ...]:
        return tuple(
            GpuSlot(gpu_id(node.name, i), node.name, i, node.gpu) for node in self.nodes for i in range(node.count)
        )

    @cached_property
    def gpu_by_id(self) -> dict[str, GpuSlot]:
        return {slot.id: slot for slot in self.gpus}

    def link(self, a: str, b: str) -> NodeLink | None:
        """The network link between two nodes: an override, else the rule for their zones. O(1)."""
        found = self.network.overrides.get((a, b) if a < b else (b, a))
        if found is not None:
            return found
        return self.network.rule(self.node_by_name[a].zone == self.node_by_name[b].zone)

    def node_bandwidth(self, a: str, b: str) -> float:
        """Bytes/s per direction: the intra-node link for a == b, else min(NICs, network link), 0 without a link."""
        if a == b:
            return self.node_by_name[a].intra_link.bandwidth
        link = self.link(a, b)
        return 0.0 if link is None else min(link.bandwidth, self.node_by_name[a].nic, self.node_by_name[b].nic)

    def node_latency(self, a: str, b: str) -> float:
        if a == b:
            return self.node_by_name[a].intra_link.latency
        link = self.link(a, b)
        return math.inf if link is None else link.latency

    @cached_property
    def bandwidth_matrix(self) -> np.ndarray:
        """Node×node `node_bandwidth`, built on first use (the partitioner's spectral step needs it dense).

        O(nodes²) memory, so only the solver and small tables ask for it; validation never does."""
        zone_of = {zone: i for i, zone in enumerate(sorted({node.zone for node in self.nodes}))}
        zones = np.array([zone_of[node.zone] for node in self.nodes])
        nic = np.array([node.nic for node in self.nodes])
        same, cross = self.network.rule(True), self.network.rule(False)
        rule = np.where(
            zones[:, None] == zones[None, :], same.bandwidth if same else 0.0, cross.bandwidth if cross else 0.0
        )
        matrix = np.minimum(rule, np.minimum.outer(nic, nic))
        for (a, b), link in self.network.overrides.items():
            i, j = self.node_index[a], self.node_index[b]
            matrix[i, j] = matrix[j, i] = min(link.bandwidth, nic[i], nic[j])
        np.fill_diagonal(matrix, [node.intra_link.bandwidth for node in self.nodes])
        return matrix

    def price_per_hour(self, gpu_ids: Iterable[str]) -> float:
        return sum(self.node_by_name[self.gpu_by_id[g].node].price_per_gpu_hour for g in gpu_ids)

    @property
    def total_price_per_hour(self) -> float:
        return sum(node.price_per_gpu_hour * node.count for node in self.nodes)

    def unreachable_nodes(self) -> list[str]:
        """Nodes outside the largest connected component (empty when the network is connected).

        Union-find over the explicit overrides, plus one union of everything when the rules link
        every pair: O(nodes + overrides), no pair is ever enumerated."""
        names = [node.name for node in self.nodes]
        groups = nx.utils.UnionFind(names)
        if self.network.connects_every_pair(len({node.zone for node in self.nodes})):
            groups.union(*names)
        for a, b in self.network.overrides:
            groups.union(a, b)
        components = sorted(groups.to_sets(), key=lambda c: (-len(c), min(c)))
        return sorted(name for component in components[1:] for name in component)
