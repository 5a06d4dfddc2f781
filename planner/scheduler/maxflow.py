"""Max-flow over prefill and decode replicas: throughput, routing weights and the bottleneck.

Network (capacities in requests/s):

    source ─▶ P_in ─[prefill cap]─▶ P_out ─[KV cap]─▶ D_in ─[decode cap]─▶ D_out ─▶ sink
    source ─▶ C_in ─[colocated cap]─▶ C_out ─▶ sink         (replicas doing both phases)

KV caches travel either over a route's own arc (P_out→D_in, capacity = what the links between
the two replicas carry) or through shared *hubs*: capacitated nodes that several routes cross,
such as a node's NIC or the network link between two nodes (see planner.scheduler.kvnet). A hub H is
split into H_in ─[hub cap]─▶ H_out; `hub_arcs` connect P_out, hubs and D_in in any DAG.

The source and sink arcs carry the same capacity as the replica arc after them, so no arc
is infinite. The max-flow value is the plan's sustainable request rate. The flow is decomposed
into P→D paths, and each (prefill, decode) pair's total is the share of requests the router
sends along that route. The arcs of a minimum cut say what limits the plan (prefill, decode or
KV transfer, hubs included).

Solved with scipy's Edmonds–Karp (`scipy.sparse.csgraph.maximum_flow`, O(V·E²)), which needs
integer capacities: rates are scaled so the largest total fits in 2³⁰. When some route loads hubs
only in part (a replica pipelined over several nodes), planner.scheduler.lpflow solves the same
network as a linear program instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow

from planner.scheduler.flownet import SINK as _SINK
from planner.scheduler.flownet import SOURCE as _SOURCE
from planner.scheduler.flownet import Network, PairArcs
from planner.scheduler.lpflow import lp_flow

Bottleneck = Literal["prefill", "decode", "kv_transfer", "colocated", "none"]
_UNBOUNDED = 2.0**31 - 1  # scaled capacity of arcs that only connect (never part of a min cut)


@dataclass(frozen=True)
class FlowResult:
    value: float
    replica_flow: Mapping[str, float]  # requests/s through each replica
    routes: Mapping[tuple[str, str], float]  # (prefill id, decode id) → requests/s
    bottleneck: Bottleneck
    cut_capacity: Mapping[str, float]  # capacity of the min-cut arcs by kind
    upper_bound: bool = False  # the value only bounds the real flow (planner.scheduler.network, relaxed)


def max_flow(
    prefill: Mapping[str, float],
    decode: Mapping[str, float],
    kv: Mapping[tuple[str, str], float],
    colocated: Mapping[str, float] | None = None,
    *,
    hubs: Mapping[str, float] | None = None,
    hub_arcs: Sequence[tuple[str, str]] = (),
    pairs: PairArcs | None = None,
    shares: Mapping[tuple[str, str], Mapping[str, float]] | None = None,
    method: Literal["edmonds_karp", "dinic"] = "edmonds_karp",
    details: bool = True,
) -> FlowResult:
    """Maximum request rate through the replica network; see the module docstring.

    Every argument maps replica ids (or id pairs, or hub ids) to capacities in requests/s; a
    missing KV pair means no direct route, an infinite capacity no limit. `hub_arcs` are (from, to)
    pairs whose ends are a prefill id (as tail), a hub id, or a decode id (as head); `pairs` adds
    capacitated hub→hub arcs as arrays (flownet.PairArcs: node pairs of a large cluster). `shares` load
    hubs with a fraction of what a direct KV arc carries (a route whose KV crosses them in part):
    then the problem is a linear program (planner.scheduler.lpflow), else scipy's max-flow. Inputs are
    read in sorted order, so the result is deterministic. With details=False the routes, min cut and
    bottleneck are left empty ("none"): a search that only compares values skips that work.
    """
    net = Network.of(prefill, decode, kv, colocated or {}, hubs or {}, hub_arcs, pairs)
    if shares:
        flows, value, cut = lp_flow(net, shares)
    else:
        flows, value, cut = _scipy_flow(net, method, details)
    owner = {net.index[rid]: rid for rid in net.ids}
    n_replicas = len(prefill) + len(decode) + len(colocated or {})
    inner = (net.tails >= 2) & (net.tails < 2 + 2 * n_replicas) & (net.tails % 2 == 0)  # X_in nodes
    own = np.flatnonzero(inner & (net.heads == net.tails + 1))
    replica_flow = {owner[int(net.tails[k])]: float(flows[k]) for k in own}  # each replica's own in→out arc
    if not details:
        return FlowResult(value, replica_flow, {}, "none", {})
    routes = _decompose(net, flows, set(prefill), set(decode), tolerance=1e-9 * net.total)  # total ≥ 1e-12
    bottleneck: Bottleneck = max(cut, key=lambda kind: (cut[kind], kind)) if cut else "none"
    return FlowResult(value, replica_flow, routes, bottleneck, cut)


def _scipy_flow(net: Network, method: str, details: bool) -> tuple[np.ndarray, float, dict[str, float]]:
    """Arc flows (requests/s), value and min-cut capacity by kind, by scipy's integer max-flow: rates
    are scaled so the largest total fits in 2³⁰; unlimited arcs get the largest integer."""
    scale = 2.0**30 / net.total
    if not len(net.tails):
        return np.zeros(0), 0.0, {}
    caps = np.minimum(net.caps * scale, _UNBOUNDED).astype(np.int32)
    tails, heads = net.tails.astype(np.int32), net.heads.astype(np.int32)
    graph = csr_matrix((caps, (tails, heads)), shape=(net.nodes, net.nodes))
    result = maximum_flow(graph, _SOURCE, _SINK, method=method)
    flows = np.asarray(result.flow.tocsr()[tails, heads]).ravel()
    cut = _min_cut_capacity(net.nodes, net.arcs, caps, flows, scale) if details else {}
    return flows.astype(float) / scale, float(result.flow_value) / scale, cut


def _decompose(
    net: Network, flows: np.ndarray, prefill: set[str], decode: set[str], tolerance: float
) -> dict[tuple[str, str], float]:
    """Split the KV part of the flow into prefill→decode paths; sum each pair's paths.

    The KV part is a DAG (P_out → hubs → D_in), so depth-first path peeling terminates; arcs are
    visited in sorted order, so the decomposition is deterministic. Flows below `tolerance` are noise.
    """
    remaining: dict[int, list[list]] = {}  # node → [[head, flow left], …] on KV arcs
    for (tail, head, _, kind), value in zip(net.arcs, flows):
        if kind in ("kv_transfer", "link") and value > tolerance:
            remaining.setdefault(tail, []).append([head, float(value)])
    for out in remaining.values():
        out.sort()
    owner = {net.index[rid]: rid for rid in net.ids}
    routes: dict[tuple[str, str], float] = {}
    for p in sorted(prefill):
        start = net.index[p] + 1
        while True:
            path, node = [], start
            while not (node in owner and owner[node] in decode):
                step = next((arc for arc in remaining.get(node, []) if arc[1] > tolerance), None)
                if step is None:
                    break
                path.append(step)
                node = step[0]
            if not path or not (node in owner and owner[node] in decode):
                break
            amount = min(arc[1] for arc in path)
            for arc in path:
                arc[1] -= amount
            key = (p, owner[node])
            routes[key] = routes.get(key, 0.0) + amount
    return routes


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
