"""What one prefill→decode route puts on each NIC and network link: the unit the KV network is made of.

Each layer's KV moves from the prefill stage holding it to the decode stage holding it
(planner.costs.kvtransfer.kv_transfer_loads). A route's traffic is counted on the *shared resources*
it crosses, each once, in requests/s units (capacity = bandwidth ÷ KV bytes of one mean request):

    E:u        node u's NIC, outgoing         gets the share of the request's KV leaving u
    I:v        node v's NIC, incoming         gets the share entering v (from every other node together)
    L:u|v      the network link u → v         gets the share crossing it

so a prefill replica pipelined over nodes a and b that sends to a decode replica on c loads I:c with
its whole KV once (not once per node pair), and E:a, E:b with their own layers' shares. KV that stays
inside a node crosses the intra-node link with min(tp_p, tp_d) GPU pairs in parallel; that part is the
route's own bound (`own_rps`), shared with no other route.

Why a module of its own: the route capacity a plan records (scheduler.assess.route_capacity), the
max-flow network of the search and of `evaluate` (scheduler.kvnet) all read the same loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.costs.kvtransfer import kv_bytes_per_request, kv_transfer_loads
from planner.costs.layout import Layout
from planner.inputs.problem import Cluster

Hub = str  # "E:node", "I:node" or "L:from|to"


def egress(node: str) -> Hub:
    return f"E:{node}"


def ingress(node: str) -> Hub:
    return f"I:{node}"


def wire(a: str, b: str) -> Hub:
    return f"L:{a}|{b}"


@dataclass(frozen=True)
class RouteTraffic:
    """One route's KV per request: its share on each shared hub, and its own (intra-node) bound."""

    shares: tuple[tuple[Hub, float], ...]  # (hub, share of one request's KV ∈ (0, 1]), sorted by hub
    own_rps: float  # requests/s the route's intra-node copies allow (inf when none)


def hub_capacity(cluster: Cluster, hub: Hub, per_request: float | None = None) -> float:
    """Requests/s of mean-request KV the hub carries (its bandwidth ÷ KV bytes per request)."""
    per_request = per_request or kv_bytes_per_request(cluster)
    kind, name = hub[0], hub[2:]
    if kind in "EI":
        return cluster.node_by_name[name].nic / per_request
    a, b = name.split("|")
    link = cluster.link(a, b)
    return (link.bandwidth if link is not None else 0.0) / per_request


def route_traffic(cluster: Cluster, prefill: Layout, decode: Layout) -> RouteTraffic:
    """The route's shares on NICs and links and its own intra-node bound (module docstring)."""
    shares: dict[Hub, float] = {}
    own = math.inf
    prompt = cluster.workload.prompt.mean
    per_token = kv_bytes_per_request(cluster) / prompt  # KV bytes of one prompt token, all layers
    for (u, v), (bytes_per_token, bandwidth) in kv_transfer_loads(cluster, prefill, decode).items():
        if u == v:
            own = min(own, bandwidth / (bytes_per_token * prompt))
            continue
        for hub in (egress(u), ingress(v), wire(u, v)):
            shares[hub] = shares.get(hub, 0.0) + bytes_per_token / per_token
    return RouteTraffic(tuple(sorted(shares.items())), own)


def traffic_capacity(cluster: Cluster, traffic: RouteTraffic) -> float:
    """Requests/s the route sustains with every resource to itself: min(own, hub capacity ÷ share)."""
    capacity = traffic.own_rps
    for hub, share in traffic.shares:
        capacity = min(capacity, hub_capacity(cluster, hub) / share)
    return capacity
