"""Max-flow over prefill and decode replicas: throughput, routing weights and the bottleneck.

Network (capacities in requests/s):

    source ─▶ P_in ─[prefill cap]─▶ P_out ─[KV cap]─▶ D_in ─[decode cap]─▶ D_out ─▶ sink
    source ─▶ C_in ─[colocated cap]─▶ C_out ─▶ sink         (replicas doing both phases)

The source and sink arcs carry the same capacity as the replica arc after them, so no arc
is infinite. The max-flow value is the plan's sustainable request rate; the flow on each
P_out→D_in arc is the share of requests the router sends along that route; the arcs of a
minimum cut say what limits the plan (prefill, decode or KV transfer).

Solved with scipy's Edmonds–Karp (`scipy.sparse.csgraph.maximum_flow`, O(V·E²)), which needs
integer capacities: rates are scaled so the largest total fits in 2³⁰.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

Bottleneck = Literal["prefill", "decode", "kv_transfer", "colocated", "none"]
_SOURCE, _SINK = 0, 1


@dataclass(frozen=True)
class FlowResult:
    value: float
    replica_flow: Mapping[str, float]  # requests/s through each replica
    routes: Mapping[tuple[str, str], float]  # (prefill id, decode id) → requests/s
    bottleneck: Bottleneck
    cut_capacity: Mapping[str, float]  # capacity of the min-cut arcs by kind


def max_flow(
    prefill: Mapping[str, float],
    decode: Mapping[str, float],
    kv: Mapping[tuple[str, str], float],
    colocated: Mapping[str, float] | None = None,
    *,
    method: Literal["edmonds_karp", "dinic"] = "edmonds_karp",
) -> FlowResult:
    """Maximum request rate through the replica network; see the module docstring.

    Every argument maps replica ids (or id pairs) to capacities in requests/s; a missing KV
    pair means no route. Inputs are read in sorted order, so the result is deterministic.
    """
    colocated = colocated or {}
    ids = sorted(prefill) + sorted(decode) + sorted(colocated)
    index = {rid: 2 + 2 * i for i, rid in enumerate(ids)}  # X_in = index, X_out = index + 1
    total = max(sum(prefill.values()) + sum(colocated.values()), sum(decode.values()) + sum(colocated.values()), 1e-12)
    scale = 2.0**30 / total

    # (tail, head, capacity, kind): source/sink arcs carry the kind of the replica they guard.
    arcs: list[tuple[int, int, float, str]] = []
    for kind, replicas in (("prefill", prefill), ("decode", decode), ("colocated", colocated)):
        for rid in sorted(replicas):
            cap, node = replicas[rid], index[rid]
            if kind != "decode":
                arcs.append((_SOURCE, node, cap, kind))
            arcs.append((node, node + 1, cap, kind))
            if kind != "prefill":
                arcs.append((node + 1, _SINK, cap, kind))
    for (p, d) in sorted(kv):
        if p in prefill and d in decode and kv[(p, d)] > 0:
            arcs.append((index[p] + 1, index[d], kv[(p, d)], "kv_transfer"))

    n = 2 + 2 * len(ids)
    caps = np.array([int(min(cap * scale, 2**31 - 1)) for *_, cap, _ in arcs], dtype=np.int32)
    tails = np.array([a[0] for a in arcs], dtype=np.int32)
    heads = np.array([a[1] for a in arcs], dtype=np.int32)
    graph = csr_matrix((caps, (tails, heads)), shape=(n, n))
    result = maximum_flow(graph, _SOURCE, _SINK, method=method)
    flow = result.flow.tocsr()
    flows = np.asarray(flow[tails, heads]).ravel()

    replica_flow = {rid: 0.0 for rid in ids}
    routes: dict[tuple[str, str], float] = {}
    owner = {index[rid]: rid for rid in ids}
    for (tail, head, _, kind), value in zip(arcs, flows):
        rate = float(value) / scale
        if kind == "kv_transfer":
            if value > 0:
                routes[(owner[tail - 1], owner[head])] = rate
        elif head == tail + 1 and tail in owner:  # the replica's own in→out arc
            replica_flow[owner[tail]] = rate

    cut = _min_cut_capacity(n, arcs, caps, flows, scale)
    bottleneck: Bottleneck = max(cut, key=lambda kind: (cut[kind], kind)) if cut else "none"
    return FlowResult(float(result.flow_value) / scale, replica_flow, routes, bottleneck, cut)


def _min_cut_capacity(
    n: int, arcs: list[tuple[int, int, float, str]], caps: np.ndarray, flows: np.ndarray, scale: float
) -> dict[str, float]:
    """Capacity of the arcs leaving the source side of the final residual graph, by kind."""
    residual: list[list[int]] = [[] for _ in range(n)]
    for (tail, head, _, _), cap, value in zip(arcs, caps, flows):
        if value < cap:
            residual[tail].append(head)
        if value > 0:
            residual[head].append(tail)
    reached = {_SOURCE}
    queue = deque([_SOURCE])
    while queue:
        for nxt in residual[queue.popleft()]:
            if nxt not in reached:
                reached.add(nxt)
                queue.append(nxt)
    cut: dict[str, float] = {}
    for (tail, head, _, kind), cap in zip(arcs, caps):
        if tail in reached and head not in reached and cap > 0:
            cut[kind] = cut.get(kind, 0.0) + float(cap) / scale
    return cut
