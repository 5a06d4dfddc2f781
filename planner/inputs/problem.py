"""The resolved cluster: nodes, GPUs, and the bandwidth between any two of them.

Why a separate record from the spec: the planner's algorithms need SI numbers and O(1)
bandwidth look-ups (a node×node matrix), not validation machinery. Bandwidth between two
GPUs is the intra-node link inside a node, else the bottleneck of the two NICs and the
network link between their nodes (0 when the network has no link).
"""

from __future__ import annotations

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
    links: Mapping[tuple[str, str], NodeLink] = field(repr=False)

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

    @cached_property
    def bandwidth_matrix(self) -> np.ndarray:
        """Node×node bytes/s, per direction: diagonal = intra-node link, else min(NICs, network link)."""
        n = len(self.nodes)
        matrix = np.zeros((n, n))
        for i, node in enumerate(self.nodes):
            matrix[i, i] = node.intra_link.bandwidth
        for (a, b), link in self.links.items():
            i, j = self.node_index[a], self.node_index[b]
            matrix[i, j] = matrix[j, i] = min(link.bandwidth, self.nodes[i].nic, self.nodes[j].nic)
        return matrix

    @cached_property
    def latency_matrix(self) -> np.ndarray:
        n = len(self.nodes)
        matrix = np.full((n, n), np.inf)
        for i, node in enumerate(self.nodes):
            matrix[i, i] = node.intra_link.latency
        for (a, b), link in self.links.items():
            i, j = self.node_index[a], self.node_index[b]
            matrix[i, j] = matrix[j, i] = link.latency
        return matrix

    def node_bandwidth(self, a: str, b: str) -> float:
        return float(self.bandwidth_matrix[self.node_index[a], self.node_index[b]])

    def node_latency(self, a: str, b: str) -> float:
        return float(self.latency_matrix[self.node_index[a], self.node_index[b]])

    def price_per_hour(self, gpu_ids: Iterable[str]) -> float:
        return sum(self.node_by_name[self.gpu_by_id[g].node].price_per_gpu_hour for g in gpu_ids)

    @property
    def total_price_per_hour(self) -> float:
        return sum(node.price_per_gpu_hour * node.count for node in self.nodes)

    def node_graph(self) -> nx.Graph:
        """Nodes joined where the network has a link; edge weight = bandwidth (bytes/s)."""
        graph = nx.Graph()
        graph.add_nodes_from(node.name for node in self.nodes)
        graph.add_weighted_edges_from((a, b, float(self.node_bandwidth(a, b))) for a, b in self.links)
        return graph

    def unreachable_nodes(self) -> list[str]:
        """Nodes outside the largest connected component (empty when the network is connected)."""
        components = sorted(nx.connected_components(self.node_graph()), key=lambda c: (-len(c), min(c)))
        return sorted(name for component in components[1:] for name in component)
