"""Phase 1 of the scheduler: split the GPUs into K memory-balanced, well-connected groups.

Method: recursive spectral bisection of the bandwidth-weighted GPU graph. At each step the
Fiedler vector of the normalised Laplacian (scipy's dense symmetric eigensolver; LAPACK is
deterministic and avoids networkx's tracemin hang on dense weighted graphs) orders the GPUs; the
split point is the cheapest cut (least bandwidth crossing it) among the points that give each
side its share of memory (k₁/k of it, ± half a group's share). Then Kernighan–Lin
(networkx `kernighan_lin_bisection`) swaps GPUs between neighbouring groups when that raises
intra-group bandwidth and both groups still fit the model.

Cost: one dense eigendecomposition per bisection level, O(n³) worst case; ~0.5 s for 1024 GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np
from scipy.linalg import eigh
from scipy.sparse.csgraph import laplacian

from planner.inputs.problem import Cluster

Group = tuple[str, ...]
Fits = Callable[[Sequence[str]], bool]


def make_blocks(cluster: Cluster, replica_bytes: float) -> list[Group]:
    """Coarsen the GPU graph: each node is cut into equal power-of-two chunks of GPUs.

    A chunk is the smallest TP group of that node's GPU type that holds one replica (capped by
    the node), so every union of chunks is a group the layout step can use (TP within a node,
    stages of equal TP). Partitioning chunks instead of GPUs keeps 1024-GPU clusters cheap.
    """
    blocks: list[Group] = []
    for node in cluster.nodes:
        need = replica_bytes / (node.gpu.memory * cluster.memory_utilization)
        size = 1
        while size < need and size * 2 <= node.count and node.count % (size * 2) == 0:
            size *= 2
        ids = [slot.id for slot in cluster.gpus if slot.node == node.name]
        blocks.extend(tuple(ids[i : i + size]) for i in range(0, len(ids), size))
    return blocks


def block_bandwidth(cluster: Cluster, blocks: Sequence[Group]) -> np.ndarray:
    """Block×block bandwidth: node-pair bandwidth × GPU pairs, zero on the diagonal."""
    nodes = np.array([cluster.node_index[cluster.gpu_by_id[b[0]].node] for b in blocks])
    sizes = np.array([len(b) for b in blocks], dtype=float)
    matrix = cluster.bandwidth_matrix[np.ix_(nodes, nodes)] * np.outer(sizes, sizes)
    np.fill_diagonal(matrix, 0.0)
    return matrix


def fiedler_order(weights: np.ndarray) -> np.ndarray:
    """Indices sorted by the Fiedler vector (ties by index, so blocks of one node stay together)."""
    n = len(weights)
    if n <= 2:
        return np.arange(n)
    scaled = weights / max(weights.max(), 1e-30)
    _, vectors = eigh(laplacian(scaled, normed=True), subset_by_index=[1, 1])
    vector = vectors[:, 0]
    if vector[np.argmax(np.abs(vector))] < 0:  # fix the eigenvector's arbitrary sign
        vector = -vector
    return np.lexsort((np.arange(n), np.round(vector, 9)))


def _best_split(weights: np.ndarray, memory: np.ndarray, share: float, tolerance: float) -> int:
    """Split position i (left = first i) with the least cut among those near the memory share."""
    n = len(memory)
    cumulative = np.cumsum(memory)[:-1] / memory.sum()  # left fraction for i = 1..n-1
    prefix = weights.cumsum(0).cumsum(1)
    positions = np.arange(1, n)
    cuts = prefix[positions - 1, n - 1] - prefix[positions - 1, positions - 1]
    distance = np.abs(cumulative - share)
    allowed = distance <= max(tolerance, distance.min() + 1e-12)
    scale = max(float(cuts.max()), 1e-30)
    best = min(positions[allowed], key=lambda i: (round(float(cuts[i - 1]) / scale, 6), float(distance[i - 1]), i))
    return int(best)


def _bisect(cluster: Cluster, blocks: list[Group], weights: np.ndarray, k: int) -> list[list[Group]]:
    if k <= 1 or len(blocks) <= 1:
        return [blocks]
    k = min(k, len(blocks))
    order = fiedler_order(weights)
    ordered = [blocks[i] for i in order]
    ordered_weights = weights[np.ix_(order, order)]
    memory = np.array([sum(cluster.gpu_by_id[g].gpu.memory for g in b) for b in ordered])
    left_k = k // 2
    split = _best_split(ordered_weights, memory, left_k / k, 0.5 / k)
    split = min(max(split, left_k), len(ordered) - (k - left_k))
    return _bisect(cluster, ordered[:split], ordered_weights[:split, :split], left_k) + _bisect(
        cluster, ordered[split:], ordered_weights[split:, split:], k - left_k
    )


def spectral_groups(cluster: Cluster, blocks: Sequence[Group], k: int) -> list[list[Group]]:
    """Split the blocks into k groups (each a list of blocks) by recursive spectral bisection."""
    return _bisect(cluster, list(blocks), block_bandwidth(cluster, blocks), k)


def kernighan_lin_refine(
    cluster: Cluster, groups: list[list[Group]], fits: Fits, *, seed: int, neighbours: int = 2
) -> list[list[Group]]:
    """Swap blocks between each group and its best-connected neighbours when that raises
    intra-group bandwidth and both groups still fit (networkx Kernighan–Lin on the pair)."""
    if len(groups) < 2:
        return groups
    groups = [list(g) for g in groups]
    blocks = [b for group in groups for b in group]
    weights = block_bandwidth(cluster, blocks)
    rows, cols = np.nonzero(np.triu(weights))
    owner = np.array([i for i, group in enumerate(groups) for _ in group])
    between = np.zeros((len(groups), len(groups)))  # bandwidth between groups (numpy, not edge by edge)
    np.add.at(between, (owner[rows], owner[cols]), weights[rows, cols])
    between = between + between.T
    np.fill_diagonal(between, 0.0)
    pairs: set[tuple[int, int]] = set()
    others = np.arange(len(groups))
    for i in range(len(groups)):  # each group's best-connected neighbours (ties: the lower index)
        for j in np.lexsort((others, -between[i]))[:neighbours].tolist():
            if between[i, j] > 0:
                pairs.add((min(i, j), max(i, j)))
    position = {b: k for k, b in enumerate(blocks)}

    def internal(group: Sequence[Group]) -> float:
        idx = [position[b] for b in group]
        return float(weights[np.ix_(idx, idx)].sum()) / 2

    def pair_graph(union: Sequence[Group]) -> nx.Graph:
        """The weighted graph of two groups' blocks (built per pair: the whole graph is quadratic)."""
        idx = sorted(position[b] for b in union)
        graph = nx.Graph()
        graph.add_nodes_from(blocks[k] for k in idx)
        edges = ((a, b) for x, a in enumerate(idx) for b in idx[x + 1 :] if weights[a, b])
        graph.add_weighted_edges_from((blocks[a], blocks[b], float(weights[a, b])) for a, b in edges)
        return graph

    for i, j in sorted(pairs):
        if len(groups[i]) + len(groups[j]) < 3:
            continue
        union = [*groups[i], *groups[j]]
        left, right = nx.algorithms.community.kernighan_lin_bisection(
            pair_graph(union), partition=(set(groups[i]), set(groups[j])), weight="weight", seed=seed
        )
        new_i = sorted(left, key=union.index)
        new_j = sorted(right, key=union.index)
        gain = internal(new_i) + internal(new_j) - internal(groups[i]) - internal(groups[j])
        if gain > 1e-9 * max(1.0, internal(union)) and fits(flatten(new_i)) and fits(flatten(new_j)):
            groups[i], groups[j] = new_i, new_j
    return groups


def flatten(blocks: Sequence[Group]) -> Group:
    return tuple(g for block in blocks for g in block)


def candidate_k(cluster: Cluster, replica_bytes: float, n_blocks: int) -> list[int]:
    """K values to try: total usable memory ÷ one replica's memory, and its neighbours."""
    usable = sum(slot.gpu.memory for slot in cluster.gpus) * cluster.memory_utilization
    k0 = max(1, int(usable // replica_bytes))
    return sorted({k for k in (k0 - 1, k0, k0 + 1, (3 * k0) // 4, n_blocks) if 1 <= k <= n_blocks})
