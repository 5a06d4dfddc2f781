"""The KV-transfer part of the max-flow network, with the links that routes share.

A route's own capacity (costmodel.kv_transfer_capacity) assumes it has the links to itself.
Routes between replicas on different nodes share the nodes' NICs and the network link between
the two nodes. So when a prefill and a decode replica each sit on one node, their KV traffic
goes through shared hubs, each with capacity = bandwidth ÷ KV bytes of a mean request:

    P_out ─▶ E:a (NIC of node a, out) ─▶ L:a|b (network link a–b) ─▶ I:b (NIC of node b, in) ─▶ D_in

Any path through these hubs is a legal route (any prefill replica on a may send to any decode
replica on b), so the max-flow stays exact. Routes inside one node (NVLink/PCIe, not shared with
the network), routes of replicas spanning several nodes, and node pairs where some replica pair
cannot talk (TP sizes that do not divide) keep their own arc: an approximation for the middle case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.costmodel import kv_bytes_per_request
from planner.topology import Cluster

if TYPE_CHECKING:  # evaluate imports this module
    from planner.evaluate import Assessment


@dataclass(frozen=True)
class KvNetwork:
    direct: dict[tuple[str, str], float]  # (prefill id, decode id) → own-arc capacity, requests/s
    hubs: dict[str, float]  # hub id → capacity, requests/s
    hub_arcs: tuple[tuple[str, str], ...]  # (from, to) among prefill ids, hub ids, decode ids


def home_node(cluster: Cluster, replica: Assessment) -> str | None:
    """The node a replica sits on, or None when its stages span nodes."""
    nodes = {cluster.gpu_by_id[g].node for g in replica.layout.gpus}
    return nodes.pop() if len(nodes) == 1 else None


def kv_network(
    cluster: Cluster,
    prefill: Sequence[Assessment],
    decode: Sequence[Assessment],
    route_capacity: Callable[[Assessment, Assessment], float],
) -> KvNetwork:
    """Direct arcs and shared hubs for every usable route (route_capacity > 0)."""
    per_request = kv_bytes_per_request(cluster)
    home = {a.id: home_node(cluster, a) for a in [*prefill, *decode]}
    caps = {(p.id, d.id): route_capacity(p, d) for p in prefill for d in decode}
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    blocked: set[tuple[str, str]] = set()
    for (p, d), cap in caps.items():
        a, b = home[p], home[d]
        if a is None or b is None or a == b:
            continue
        pairs.setdefault((a, b), []).append((p, d))
        if cap <= 0:
            blocked.add((a, b))
    direct = {pair: cap for pair, cap in caps.items() if cap > 0}
    hubs: dict[str, float] = {}
    arcs: list[tuple[str, str]] = []
    for (a, b), routes in sorted(pairs.items()):
        if (a, b) in blocked:
            continue
        link = cluster.links.get((min(a, b), max(a, b)))
        if link is None:
            continue
        egress, wire, ingress = f"E:{a}", f"L:{a}|{b}", f"I:{b}"
        hubs[egress] = cluster.node_by_name[a].nic / per_request
        hubs[wire] = link.bandwidth / per_request
        hubs[ingress] = cluster.node_by_name[b].nic / per_request
        arcs += [(egress, wire), (wire, ingress)]
        for p, d in routes:
            direct.pop((p, d), None)
            arcs += [(p, egress), (ingress, d)]
    return KvNetwork(direct, hubs, tuple(sorted(set(arcs))))
