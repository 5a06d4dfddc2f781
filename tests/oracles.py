"""Independent oracles: what a set of replicas can serve, computed with networkx from the physics alone.

`served_rps` builds its own flow network and does not call the planner's network code (kvnet, network,
maxflow) nor its KV-transfer cost functions. Every physical resource is a capacitated vertex, once:

    source ─▶ prefill ─▶ NIC out of node a ─▶ wire a→b ─▶ NIC into node b ─▶ decode ─▶ sink
    source ─▶ colocated ─▶ sink

A request's KV cache is prompt × layers × 2·kv_heads·head_dim·dtype bytes. Between single-node
replicas on different nodes it crosses the sender's NIC, the wire between the nodes (per direction) and
the receiver's NIC, each shared by every such transfer. A pair on one node copies over the intra-node link
with min(tp_p, tp_d) GPU pairs in parallel; a prefill pipeline ships each stage's layers over that stage's
node pair, node pairs in parallel, stages on one node pair sharing it, on a route of its own. Only raw inputs
are read from the Cluster: nodes (NIC, intra-node link), links between nodes, model shape, mean prompt.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment


def kv_bytes_per_token_layer(c: Cluster) -> float:
    return 2 * c.model.kv_heads * c.model.head_dim * c.dtype_bytes


def kv_bytes_per_request(c: Cluster) -> float:
    return c.workload.prompt.mean * c.model.layers * kv_bytes_per_token_layer(c)


def node_of(gpu: str) -> str:
    return gpu.split("/")[0]


def wire(c: Cluster, a: str, b: str) -> float:
    """Bytes/s of the network link between two nodes (0 when there is none)."""
    link = c.links.get((min(a, b), max(a, b)))
    return 0.0 if link is None else link.bandwidth


def pair_bandwidth(c: Cluster, a: str, b: str, streams: int) -> float:
    """Bytes/s one transfer from node a to node b gets when it has the links to itself."""
    nodes = {n.name: n for n in c.nodes}
    if a == b:
        return nodes[a].intra_link.bandwidth * streams
    return min(wire(c, a, b), nodes[a].nic, nodes[b].nic)


def own_route_capacity(c: Cluster, p: Assessment, d: Assessment) -> float:
    """Requests/s of KV one prefill → decode route carries alone: node pairs in parallel, the slowest decides; the
    stage pairs on one node pair share it (inside a node with as many streams as its widest stage pair)."""
    per_layer = c.workload.prompt.mean * kv_bytes_per_token_layer(c)
    layers: dict[tuple[str, str], int] = {}
    streams: dict[tuple[str, str], int] = {}
    for ps in p.layout.stages:
        for ds in d.layout.stages:
            overlap = min(ps.layer_end, ds.layer_end) - max(ps.layer_start, ds.layer_start)
            if overlap > 0:
                pair = (node_of(ps.gpus[0]), node_of(ds.gpus[0]))
                layers[pair] = layers.get(pair, 0) + overlap
                streams[pair] = max(streams.get(pair, 1), min(len(ps.gpus), len(ds.gpus)))
    seconds = 0.0
    for pair, count in layers.items():
        bandwidth = pair_bandwidth(c, *pair, streams[pair])
        if bandwidth <= 0:
            return 0.0
        seconds = max(seconds, count * per_layer / bandwidth)
    return 1.0 / seconds if seconds > 0 else 0.0


def single_node(a: Assessment) -> str | None:
    nodes = {node_of(g) for g in a.layout.gpus}
    return nodes.pop() if len(nodes) == 1 else None


def compatible(p: Assessment, d: Assessment) -> bool:
    """KV connectors join replicas whose TP sizes divide one another."""
    return p.layout.tp % d.layout.tp == 0 or d.layout.tp % p.layout.tp == 0


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
            if launchable and not compatible(p, d):
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


def served_rps(c: Cluster, replicas: Iterable[Assessment], *, launchable: bool = True) -> float:
    """The maximum request rate the replicas serve together (networkx max-flow over `flow_network`)."""
    return float(nx.maximum_flow_value(flow_network(c, replicas, launchable=launchable), "source", "sink"))
