"""Independent oracles: what a set of replicas can serve, computed with networkx from the physics alone.

`served_rps` builds its own flow network and does not call the planner's network code (kvnet, network,
maxflow) nor its KV-transfer cost functions. Every physical resource is a capacitated vertex, once:

    source ─▶ prefill ─▶ NIC out of node a ─▶ wire a→b ─▶ NIC into node b ─▶ decode ─▶ sink
    source ─▶ colocated ─▶ sink

A request's KV cache is prompt × layers × 2·kv_heads·head_dim·dtype bytes. Between single-node
replicas on different nodes it crosses the sender's NIC, the wire between the nodes (per direction) and
the receiver's NIC, each shared by every such transfer. A pair on one node copies over the intra-node link
with min(tp_p, tp_d) GPU pairs in parallel, on a route of its own. A pipeline spread over nodes ships each
stage's layers over its node pair: every NIC direction and wire it crosses carries the fraction of the KV that
crosses it (counted once), so plans with such pipelines are solved as a linear program instead. Only raw inputs
are read from the Cluster: nodes (NIC, intra-node link), links between nodes, model shape, mean prompt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import networkx as nx
import numpy as np
from scipy.optimize import linprog

from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment


def kv_bytes_per_token_layer(c: Cluster) -> float:
    return 2 * c.model.kv_heads * c.model.head_dim * c.dtype_bytes


def kv_bytes_per_request(c: Cluster) -> float:
    return c.workload.prompt.mean * c.model.layers * kv_bytes_per_token_layer(c)


def node_of(gpu: str) -> str:
    return gpu.split("/")[0]


def wire(c: Cluster, a: str, b: str) -> float:
    """Bytes/s of the network link from node a to node b (0 when there is none)."""
    link = c.link(a, b)
    return 0.0 if link is None else link.bandwidth


def route_loads(c: Cluster, p: Assessment, d: Assessment) -> tuple[dict[tuple, float], float]:
    """One prefill → decode route, per request: the share of its KV on each shared resource (("nic-out", a),
    ("wire", a, b), ("nic-in", b)), each counted once however many stage pairs cross it, and the rate the
    intra-node copies allow the route alone (as many streams as its widest stage pair on that node)."""
    layers: dict[tuple[str, str], int] = {}
    streams: dict[tuple[str, str], int] = {}
    for ps in p.layout.stages:
        for ds in d.layout.stages:
            overlap = min(ps.layer_end, ds.layer_end) - max(ps.layer_start, ds.layer_start)
            if overlap > 0:
                pair = (node_of(ps.gpus[0]), node_of(ds.gpus[0]))
                layers[pair] = layers.get(pair, 0) + overlap
                streams[pair] = max(streams.get(pair, 1), min(len(ps.gpus), len(ds.gpus)))
    shares: dict[tuple, float] = {}
    own = float("inf")
    per_layer = c.workload.prompt.mean * kv_bytes_per_token_layer(c)
    nodes = {n.name: n for n in c.nodes}
    for (a, b), count in layers.items():
        if a == b:
            own = min(own, nodes[a].intra_link.bandwidth * streams[(a, b)] / (count * per_layer))
            continue
        for resource in (("nic-out", a), ("wire", a, b), ("nic-in", b)):
            shares[resource] = shares.get(resource, 0.0) + count / c.model.layers
    return shares, own


def resource_rps(c: Cluster, resource: tuple) -> float:
    """Requests/s of mean-request KV a NIC direction or a wire carries."""
    nodes = {n.name: n for n in c.nodes}
    bandwidth = wire(c, resource[1], resource[2]) if resource[0] == "wire" else nodes[resource[1]].nic
    return bandwidth / kv_bytes_per_request(c)


def own_route_capacity(c: Cluster, p: Assessment, d: Assessment) -> float:
    """Requests/s of KV one prefill → decode route carries when it has the network to itself."""
    shares, own = route_loads(c, p, d)
    return min([own, *(resource_rps(c, r) / share for r, share in shares.items())])


def single_node(a: Assessment) -> str | None:
    nodes = {node_of(g) for g in a.layout.gpus}
    return nodes.pop() if len(nodes) == 1 else None


def compatible(c: Cluster, p: Assessment, d: Assessment) -> bool:
    """KV connectors join replicas whose TP sizes divide one another, and a prefill of more ranks than the decode
    only when it does not replicate KV heads (TP ≤ KV heads)."""
    tp, tq = p.layout.tp, d.layout.tp
    return (tp % tq == 0 or tq % tp == 0) and not (tp > tq and tp > c.model.kv_heads)


def flow_network(c: Cluster, replicas: Iterable[Assessment], *, launchable: bool = True) -> nx.DiGraph:
    """The oracle's network (module docstring); vertex capacities as in → out arcs."""
    graph = nx.DiGraph()
    graph.add_nodes_from(["source", "sink"])
    replicas = list(replicas)
    per_request = kv_bytes_per_request(c)
    nodes = {n.name: n for n in c.nodes}

    def vertex(name: tuple, capacity: float) -> None:
        graph.add_edge(("in", name), ("out", name), capacity=capacity)

    for a in replicas:
        vertex(("replica", a.id), a.capacity_rps)
        if a.role != "decode":
            graph.add_edge("source", ("in", ("replica", a.id)))
        if a.role != "prefill":
            graph.add_edge(("out", ("replica", a.id)), "sink")
    for p in (a for a in replicas if a.role == "prefill"):
        for d in (a for a in replicas if a.role == "decode"):
            if launchable and not compatible(c, p, d):
                continue
            a, b = single_node(p), single_node(d)
            if a is not None and b is not None and a != b and wire(c, a, b) > 0:
                vertex(("nic-out", a), nodes[a].nic / per_request)
                vertex(("wire", a, b), wire(c, a, b) / per_request)
                vertex(("nic-in", b), nodes[b].nic / per_request)
                graph.add_edge(("out", ("replica", p.id)), ("in", ("nic-out", a)))
                graph.add_edge(("out", ("nic-out", a)), ("in", ("wire", a, b)))
                graph.add_edge(("out", ("wire", a, b)), ("in", ("nic-in", b)))
                graph.add_edge(("out", ("nic-in", b)), ("in", ("replica", d.id)))
            elif (capacity := own_route_capacity(c, p, d)) > 0:
                graph.add_edge(("out", ("replica", p.id)), ("in", ("replica", d.id)), capacity=capacity)
    return graph


def served_lp(c: Cluster, replicas: Iterable[Assessment], *, launchable: bool = True) -> float:
    """The same maximum as a route-by-route linear program (scipy): one rate per prefill → decode route and per
    colocated replica; a row per replica capacity and per shared NIC or wire, loaded by each route's shares."""
    replicas = list(replicas)
    routes = [
        (p, d, *route_loads(c, p, d))
        for p in replicas
        if p.role == "prefill"
        for d in replicas
        if d.role == "decode" and (compatible(c, p, d) or not launchable)
    ]
    colocated = [a for a in replicas if a.role == "colocated"]
    size = len(routes) + len(colocated)
    if size == 0:
        return 0.0
    rows, limits = [], []
    for a in replicas:
        row = np.zeros(size)
        for i, (p, d, _, _) in enumerate(routes):
            row[i] = 1.0 if a.id in (p.id, d.id) else 0.0
        if a.role == "colocated":
            row[len(routes) + colocated.index(a)] = 1.0
        rows.append(row)
        limits.append(a.capacity_rps)
    for resource in sorted({r for *_, shares, _ in routes for r in shares}, key=str):
        rows.append(np.array([shares.get(resource, 0.0) for *_, shares, _ in routes] + [0.0] * len(colocated)))
        limits.append(resource_rps(c, resource))
    bounds = [(0, own if math.isfinite(own) else None) for *_, own in routes] + [(0, None)] * len(colocated)
    result = linprog(-np.ones(size), A_ub=np.array(rows), b_ub=np.array(limits), bounds=bounds, method="highs")
    assert result.status == 0, result.message
    return float(-result.fun)


def served_rps(c: Cluster, replicas: Iterable[Assessment], *, launchable: bool = True) -> float:
    """The maximum request rate the replicas serve together: networkx max-flow over `flow_network` when every
    replica sits on one node (each route then loads whole NICs and wires), else the linear program `served_lp`
    (a pipeline spread over nodes loads each NIC with a fraction of its KV, which a flow network cannot say)."""
    replicas = list(replicas)
    if all(single_node(a) is not None for a in replicas):
        return float(nx.maximum_flow_value(flow_network(c, replicas, launchable=launchable), "source", "sink"))
    return served_lp(c, replicas, launchable=launchable)
