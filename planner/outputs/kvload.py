"""How busy the plan's KV routes keep the wires they cross: what a drawing colours and highlights.

A route from replica p to replica d at `rate_rps` moves, per request, each layer's KV cache from the
prefill stage holding it to the decode stage holding it (costs.kvtransfer.kv_transfer_loads: bytes per
prompt token for each (prefill node, decode node) pair). Its load on each *hop*:
- between two nodes a → b: the network link a–b and the two NICs (a's out, b's in), each shared by
  every route crossing it — the planner's shared hubs (scheduler.kvnet);
- inside one node: the route's own copy over the intra-node link (not shared in the planner either),
  so its utilisation is the route's rate over its own capacity.
Utilisation = bytes/s carried ÷ bandwidth; a hop at ≥ SATURATED is a bottleneck of the plan. A route's
utilisation is that of its busiest hop. Pure: plan and cluster in, numbers out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from planner.costs.kvtransfer import kv_transfer_loads
from planner.inputs.problem import Cluster
from planner.plans.assemble import layout_of
from planner.plans.schema import Plan, RoutePlan

SATURATED = 0.999  # flows equal to capacity come out of the max-flow within float noise


@dataclass(frozen=True)
class Hop:
    """A wire KV traffic crosses: ("link", a, b), ("nic-out", a, ""), ("nic-in", b, "") or ("intra", a, "")."""

    kind: str
    a: str
    b: str = ""

    @property
    def label(self) -> str:
        return {
            "link": f"network link {self.a} → {self.b}",
            "nic-out": f"NIC of {self.a} (out)",
            "nic-in": f"NIC of {self.a} (in)",
            "intra": f"intra-node link of {self.a}",
        }[self.kind]


@dataclass(frozen=True)
class RouteLoad:
    route: RoutePlan
    hops: tuple[Hop, ...]
    utilisation: float  # of its busiest hop

    @property
    def saturated(self) -> bool:
        return self.utilisation >= SATURATED


@dataclass(frozen=True)
class KvLoads:
    routes: tuple[RouteLoad, ...]
    hops: dict[Hop, float]  # utilisation of each hop some route crosses (intra hops: the busiest route's)

    def busiest(self) -> tuple[Hop, float] | None:
        return max(self.hops.items(), key=lambda kv: (kv[1], kv[0].kind, kv[0].a, kv[0].b), default=None)


def kv_loads(plan: Plan, cluster: Cluster) -> KvLoads:
    """Utilisation of every hop and route of the plan (module docstring). O(routes × stages²)."""
    replicas = {r.id: r for r in plan.replicas}
    mean_prompt = cluster.workload.prompt.mean
    carried: dict[Hop, float] = defaultdict(float)  # bytes/s over shared hops
    own: dict[int, float] = {}  # route index → utilisation of its own intra-node copy
    crossed: list[set[Hop]] = []
    for i, route in enumerate(plan.routes):
        loads = kv_transfer_loads(cluster, layout_of(replicas[route.source]), layout_of(replicas[route.target]))
        hops: set[Hop] = set()
        for (a, b), (bytes_per_token, _) in sorted(loads.items()):
            if a == b:
                hops.add(Hop("intra", a))
                own[i] = _share(route.rate_rps, route.capacity_rps)
                continue
            traffic = route.rate_rps * mean_prompt * bytes_per_token
            for hop in (Hop("link", a, b), Hop("nic-out", a), Hop("nic-in", b)):
                carried[hop] += traffic
                hops.add(hop)
        crossed.append(hops)
    utilisation = {hop: _share(traffic, _bandwidth(cluster, hop)) for hop, traffic in carried.items()}
    for i, hops in enumerate(crossed):
        for hop in hops:
            if hop.kind == "intra":
                utilisation[hop] = max(utilisation.get(hop, 0.0), own[i])
    routes = tuple(
        RouteLoad(
            route,
            tuple(sorted(hops, key=lambda h: (h.kind, h.a, h.b))),
            max((own[i] if h.kind == "intra" else utilisation[h] for h in hops), default=0.0),
        )
        for i, (route, hops) in enumerate(zip(plan.routes, crossed, strict=True))
    )
    return KvLoads(routes, dict(sorted(utilisation.items(), key=lambda kv: (kv[0].kind, kv[0].a, kv[0].b))))


def _share(traffic: float, bandwidth: float) -> float:
    return traffic / bandwidth if bandwidth > 0 else float("inf")


def _bandwidth(cluster: Cluster, hop: Hop) -> float:
    if hop.kind in ("nic-out", "nic-in"):
        return cluster.node_by_name[hop.a].nic
    link = cluster.link(hop.a, hop.b)
    return link.bandwidth if link is not None else 0.0


def replica_flows(plan: Plan) -> dict[str, float]:
    """Requests/s the plan sends through each replica: its routes' rates (a colocated replica serves its
    capacity: its arc runs straight from the source to the sink, so the max-flow fills it)."""
    flows = dict.fromkeys((r.id for r in plan.replicas), 0.0)
    for route in plan.routes:
        flows[route.source] += route.rate_rps
        flows[route.target] += route.rate_rps
    for replica in plan.replicas:
        if replica.role == "colocated":
            flows[replica.id] = replica.capacity_rps
    return flows


def saturated_replicas(plan: Plan) -> set[str]:
    """Replicas whose flow reaches their capacity: the bottleneck when the plan is prefill- or decode-bound."""
    flows = replica_flows(plan)
    return {r.id for r in plan.replicas if r.capacity_rps > 0 and flows[r.id] >= SATURATED * r.capacity_rps}
