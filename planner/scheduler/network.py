"""The max-flow network of a set of assessed replicas, assembled in one place.

Replica arcs carry each replica's capacity; the KV part (own arcs and shared NIC/link hubs) comes
from planner.scheduler.kvnet; planner.scheduler.maxflow solves it. The search scores thousands of
states with it (Dinic, no route details, each replica keeping its `route_limit` fastest own-arc
routes on large clusters); the final plan and `evaluate` use it with Edmonds–Karp and every route.
Both go through `replica_flow`, so a plan's throughput is the value its search maximised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment
from planner.scheduler.kvload import route_traffic
from planner.scheduler.kvnet import Traffic, kv_network
from planner.scheduler.maxflow import FlowResult, max_flow


def replica_flow(
    cluster: Cluster,
    replicas: Sequence[Assessment],
    traffic: Traffic,
    *,
    launchable: bool,
    method: Literal["edmonds_karp", "dinic"] = "edmonds_karp",
    details: bool = True,
    route_limit: int | None = None,
    goodput: bool = False,
    relaxed: bool = False,
) -> FlowResult:
    """Max-flow through `replicas` (by role); `traffic(p, d)` gives a route's NIC/link shares and own
    bound (planner.scheduler.kvload), asked only for routes that are not pooled.

    `route_limit`: with many replicas, keep only each replica's fastest own-arc routes (see `sparsify`).
    `goodput`: replica arcs carry each replica's capacity within the SLO instead of its saturated one
    (KV arcs are the same either way).
    `relaxed`: an upper bound without the linear program: a route that loads hubs in part gets its own
    arc, as fast as the hubs allow it alone, and stops sharing them (every flow of the real network
    fits the relaxed one); the result says `upper_bound` when there was anything to relax.
    """
    by_role = {role: [a for a in replicas if a.role == role] for role in ("prefill", "decode", "colocated")}
    prefill, decode = by_role["prefill"], by_role["decode"]
    colocated = by_role["colocated"]
    network = kv_network(cluster, prefill, decode, traffic, launchable=launchable, value_only=not details)
    if network.free or (network.unconstrained and not details):
        return free_flow(prefill, decode, colocated, details=details, goodput=goodput)
    direct, shares = network.direct, network.shares
    bound = relaxed and bool(shares)
    if bound:
        direct = {
            pair: min([cap] + [network.hubs[h] / share for h, share in shares.get(pair, {}).items()])
            for pair, cap in direct.items()
        }
        shares = {}
    if route_limit is not None:
        direct = sparsify(direct, len(prefill) + len(decode), route_limit)
    flow = max_flow(
        {a.id: a.rate(goodput) for a in prefill},
        {a.id: a.rate(goodput) for a in decode},
        direct,
        {a.id: a.rate(goodput) for a in by_role["colocated"]},
        hubs=network.hubs,
        hub_arcs=network.hub_arcs,
        pairs=network.pairs,
        shares={pair: s for pair, s in shares.items() if pair in direct},
        method=method,
        details=details,
    )
    return replace(flow, upper_bound=True) if bound else flow


ROUTE_MATRIX = 1024  # free networks route every prefill to every decode replica up to this many pairs


def free_flow(
    prefill: Sequence[Assessment],
    decode: Sequence[Assessment],
    colocated: Sequence[Assessment],
    *,
    details: bool,
    goodput: bool = False,
) -> FlowResult:
    """The flow of a free network (planner.scheduler.kvnet), without solving one: value V = min(ΣP, ΣD) +
    Σ colocated; every replica runs at the same utilisation (prefill at V/ΣP, decode at V/ΣD, colocated
    full), so each deployed replica serves and none is a hot spot. With details, the routes: up to
    ROUTE_MATRIX prefill × decode pairs, every pair in proportion to both ends' flows (a plan diff then
    shows only what changed); beyond, the north-west-corner split of those flows (prefill and decode in
    id order: at most |P| + |D| − 1 routes). The min cut is the smaller side (every KV route is free).
    `goodput`: on the replicas' capacities within the SLO, as in `replica_flow`."""
    supply = sum(a.rate(goodput) for a in prefill)
    demand = sum(a.rate(goodput) for a in decode)
    moved = min(supply, demand)
    flows = {a.id: a.rate(goodput) for a in colocated}
    for side, total in ((prefill, supply), (decode, demand)):
        flows.update({a.id: a.rate(goodput) * moved / total for a in side if total > 0})
    value = moved + sum(a.rate(goodput) for a in colocated)
    if not details:
        return FlowResult(value, flows, {}, "none", {})
    routes: dict[tuple[str, str], float] = {}
    if len(prefill) * len(decode) <= ROUTE_MATRIX:  # every pair, in proportion: stable under small changes
        for p in prefill:
            for d in decode:
                if (rate := flows[p.id] * flows[d.id] / moved if moved > 0 else 0.0) > 0:
                    routes[(p.id, d.id)] = rate
        return _free_result(value, flows, routes, prefill, decode, colocated, goodput)
    senders = [[a.id, flows[a.id]] for a in sorted(prefill, key=lambda a: a.id)]
    takers = [[a.id, flows[a.id]] for a in sorted(decode, key=lambda a: a.id)]
    i = j = 0
    while i < len(senders) and j < len(takers):
        amount = min(senders[i][1], takers[j][1])
        if amount > 1e-12 * max(moved, 1e-12):
            routes[(senders[i][0], takers[j][0])] = amount
        senders[i][1] -= amount
        takers[j][1] -= amount
        if senders[i][1] <= takers[j][1]:
            i += 1
        else:
            j += 1
    return _free_result(value, flows, routes, prefill, decode, colocated, goodput)


def _free_result(
    value: float,
    flows: dict[str, float],
    routes: dict[tuple[str, str], float],
    prefill: Sequence[Assessment],
    decode: Sequence[Assessment],
    colocated: Sequence[Assessment],
    goodput: bool,
) -> FlowResult:
    """The min cut of a free network is its smaller side (every KV route is free), plus colocated."""
    supply = sum(a.rate(goodput) for a in prefill)
    demand = sum(a.rate(goodput) for a in decode)
    cut = {"prefill" if supply <= demand else "decode": min(supply, demand)} if prefill and decode else {}
    if colocated:
        cut["colocated"] = sum(a.rate(goodput) for a in colocated)
    bottleneck = max(cut, key=lambda kind: (cut[kind], kind)) if cut else "none"
    return FlowResult(value, flows, routes, bottleneck, cut)  # type: ignore[arg-type]


def plan_flow(
    cluster: Cluster, replicas: Sequence[Assessment], *, launchable: bool, goodput: bool = False
) -> FlowResult:
    """The flow a plan of these replicas records: Edmonds–Karp over every route, with its details;
    `goodput`: on the replicas' capacities within the SLO."""
    return replica_flow(
        cluster,
        replicas,
        lambda p, d: route_traffic(cluster, p.layout, d.layout),
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
