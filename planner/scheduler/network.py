"""The max-flow network of a set of assessed replicas, assembled in one place.

Replica arcs carry each replica's capacity; the KV part (own arcs and shared NIC/link hubs) comes
from planner.scheduler.kvnet; planner.scheduler.maxflow solves it. The search scores thousands of
states with it (Dinic, no route details, each replica keeping its `route_limit` fastest own-arc
routes on large clusters); the final plan and `evaluate` use it with Edmonds–Karp and every route.
Both go through `replica_flow`, so a plan's throughput is the value its search maximised.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, route_capacity
from planner.scheduler.kvnet import kv_network
from planner.scheduler.maxflow import FlowResult, max_flow

RouteCapacity = Callable[[Assessment, Assessment], float]


def replica_flow(
    cluster: Cluster,
    replicas: Sequence[Assessment],
    route_capacity: RouteCapacity,
    *,
    launchable: bool,
    method: Literal["edmonds_karp", "dinic"] = "edmonds_karp",
    details: bool = True,
    route_limit: int | None = None,
    goodput: bool = False,
) -> FlowResult:
    """Max-flow through `replicas` (by role); `route_capacity(p, d)` gives a route's own-arc capacity.

    `route_limit`: with many replicas, keep only each replica's fastest own-arc routes (see `sparsify`).
    `goodput`: replica arcs carry each replica's capacity within the SLO instead of its saturated one
    (KV arcs are the same either way).
    """
    by_role = {role: [a for a in replicas if a.role == role] for role in ("prefill", "decode", "colocated")}
    prefill, decode = by_role["prefill"], by_role["decode"]
    network = kv_network(cluster, prefill, decode, route_capacity, launchable=launchable)
    direct = network.direct
    if route_limit is not None:
        direct = sparsify(direct, len(prefill) + len(decode), route_limit)
    return max_flow(
        {a.id: a.rate(goodput) for a in prefill},
        {a.id: a.rate(goodput) for a in decode},
        direct,
        {a.id: a.rate(goodput) for a in by_role["colocated"]},
        hubs=network.hubs,
        hub_arcs=network.hub_arcs,
        method=method,
        details=details,
    )


def plan_flow(
    cluster: Cluster, replicas: Sequence[Assessment], *, launchable: bool, goodput: bool = False
) -> FlowResult:
    """The flow a plan of these replicas records: Edmonds–Karp over every route, with its details;
    `goodput`: on the replicas' capacities within the SLO."""
    return replica_flow(
        cluster,
        replicas,
        lambda p, d: route_capacity(cluster, p, d, launchable),
        launchable=launchable,
        goodput=goodput,
    )


def sparsify(direct: Mapping[tuple[str, str], float], replicas: int, limit: int) -> Mapping[tuple[str, str], float]:
    """With many replicas, each keeps only its `limit` fastest own-arc routes, counted from both ends
    so that no replica is cut off (hub routes are few and always kept)."""
    if len(direct) <= limit * replicas:
        return direct
    ranked: dict[str, list[tuple[float, tuple[str, str]]]] = {}
    for pair, cap in direct.items():
        ranked.setdefault(pair[0], []).append((cap, pair))
        ranked.setdefault(pair[1], []).append((cap, pair))
    keep = {pair for routes in ranked.values() for _, pair in sorted(routes, reverse=True)[:limit]}
    return {pair: direct[pair] for pair in sorted(keep)}
