"""The KV-transfer part of the max-flow network, with the links that routes share.

A route's own capacity (costs.kvtransfer.kv_transfer_capacity) assumes it has the links to itself.
Routes between replicas on different nodes share the nodes' NICs and the network link between
the two nodes. So when a prefill and a decode replica each sit on one node, their KV traffic
goes through shared hubs, each with capacity = bandwidth ÷ KV bytes of a mean request:

    P_out ─▶ E:a (NIC of node a, out) ─▶ L:a|b (network link a–b) ─▶ I:b (NIC of node b, in) ─▶ D_in

(The wire hub is left out when either NIC is no faster than the link: it could never bind.) Any
path through these hubs is a legal route (any prefill replica on a may send to any decode replica
on b), so the max-flow stays exact. Routes inside one node (NVLink/PCIe, not shared with
the network), routes of replicas spanning several nodes, and node pairs where some replica pair
cannot talk (TP sizes that do not divide) keep their own arc: an approximation for the middle case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment
from planner.scheduler.launchability import pair_allowed


@dataclass(frozen=True)
class KvNetwork:
    direct: dict[tuple[str, str], float]  # (prefill id, decode id) → own-arc capacity, requests/s
    hubs: dict[str, float]  # hub id → capacity, requests/s
    hub_arcs: tuple[tuple[str, str], ...]  # (from, to) among prefill ids, hub ids, decode ids


def home_node(cluster: Cluster, replica: Assessment) -> str | None:
    """The node a replica sits on, or None when its stages span nodes."""
    nodes = {cluster.gpu_by_id[g].node for g in replica.layout.gpus}
    return nodes.pop() if len(nodes) == 1 else None


def by_home_node(
    cluster: Cluster, prefill: Sequence[Assessment], decode: Sequence[Assessment]
) -> tuple[dict[str, tuple[list[Assessment], list[Assessment]]], list[Assessment], list[Assessment]]:
    """Single-node replicas by node ((prefill, decode) lists), then the prefill and decode replicas spanning nodes."""
    by_node: dict[str, tuple[list[Assessment], list[Assessment]]] = {}
    spanning_p: list[Assessment] = []
    spanning_d: list[Assessment] = []
    for replicas, side, spanning in ((prefill, 0, spanning_p), (decode, 1, spanning_d)):
        for a in replicas:
            node = home_node(cluster, a)
            if node is None:
                spanning.append(a)
            else:
                by_node.setdefault(node, ([], []))[side].append(a)
    return by_node, spanning_p, spanning_d


def _add_hubs(cluster: Cluster, a: str, b: str, per_request: float, hubs: dict[str, float], arcs: set) -> None:
    """The hubs from node a to node b: a's NIC out, the wire (when it is slower than both NICs), b's NIC in."""
    egress, ingress = f"E:{a}", f"I:{b}"
    nic_a, nic_b = cluster.node_by_name[a].nic, cluster.node_by_name[b].nic
    hubs[egress], hubs[ingress] = nic_a / per_request, nic_b / per_request
    link = cluster.links[(min(a, b), max(a, b))]
    if link.bandwidth < min(nic_a, nic_b):  # else the NICs bound the pair's traffic already
        wire = f"L:{a}|{b}"
        hubs[wire] = link.bandwidth / per_request
        arcs.update({(egress, wire), (wire, ingress)})
    else:
        arcs.add((egress, ingress))


def kv_network(
    cluster: Cluster,
    prefill: Sequence[Assessment],
    decode: Sequence[Assessment],
    route_capacity: Callable[[Assessment, Assessment], float],
    *,
    launchable: bool,
) -> KvNetwork:
    """Direct arcs and shared hubs for every usable route (see the module docstring).

    Cost: O(#node pairs + #own-arc routes); hub routes never need a per-pair capacity.
    """
    per_request = kv_bytes_per_request(cluster)
    by_node, spanning_p, spanning_d = by_home_node(cluster, prefill, decode)
    direct: dict[tuple[str, str], float] = {}

    def own_arc(p: Assessment, d: Assessment) -> None:
        if (cap := route_capacity(p, d)) > 0:
            direct[(p.id, d.id)] = cap

    hubs: dict[str, float] = {}
    arcs: set[tuple[str, str]] = set()
    sending = sorted((a, frozenset(p.layout.tp for p in s)) for a, (s, _) in by_node.items() if s)
    receiving = sorted((b, frozenset(d.layout.tp for d in r)) for b, (_, r) in by_node.items() if r)
    compatible: dict[tuple[frozenset[int], frozenset[int]], bool] = {}
    egress_used, ingress_used = set(), set()
    for a, tps_a in sending:
        for b, tps_b in receiving:
            if (tps_a, tps_b) not in compatible:
                compatible[(tps_a, tps_b)] = not launchable or all(
                    pair_allowed(tp, tq, cluster.model.kv_heads) for tp in tps_a for tq in tps_b
                )
            if a == b or (min(a, b), max(a, b)) not in cluster.links or not compatible[(tps_a, tps_b)]:
                for p in by_node[a][0]:
                    for d in by_node[b][1]:
                        own_arc(p, d)
                continue
            _add_hubs(cluster, a, b, per_request, hubs, arcs)
            egress_used.add(a)
            ingress_used.add(b)
    for a in egress_used:  # E:a leads only to nodes b whose pair (a, b) goes through hubs
        arcs.update((p.id, f"E:{a}") for p in by_node[a][0])
    for b in ingress_used:
        arcs.update((f"I:{b}", d.id) for d in by_node[b][1])
    for p in spanning_p:
        for d in decode:
            own_arc(p, d)
    for d in spanning_d:
        for p in prefill:
            if home_node(cluster, p) is not None:
                own_arc(p, d)
    return KvNetwork(direct, hubs, tuple(sorted(arcs)))
