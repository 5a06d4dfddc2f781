"""scheduler.network: the free network's flow without a solver (`free_flow`), checked against scipy's max-flow of
the same replicas with every KV route unlimited (planner.scheduler.maxflow, itself checked against networkx in
tests/test_flow.py), and the options of `replica_flow` (goodput capacities, `route_limit`) on hand-computed cases.

Replicas here are hand-made Assessments with round capacities: free_flow reads only ids and rates.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from builders import cluster, gbps, layout, node, replica
from oracles import kv_bytes_per_request, served_rps

from planner.scheduler.assess import Assessment, EngineLimits
from planner.scheduler.flownet import PairArcs
from planner.scheduler.kvload import RouteTraffic, route_traffic
from planner.scheduler.maxflow import max_flow
from planner.scheduler.network import free_flow, replica_flow

ENGINE = EngineLimits(8, 2048, 4096, 0.9)


def fake(role: str, i: int, rate: float, goodput: float | None = None) -> Assessment:
    return Assessment(role, layout(4, [f"{role[0]}{i}/0"]), rate, 0.1, ENGINE, goodput)  # type: ignore[arg-type]


def sides(prefill: list[float], decode: list[float], colocated: list[float] = ()):
    return (
        [fake("prefill", i, r) for i, r in enumerate(prefill)],
        [fake("decode", i, r) for i, r in enumerate(decode)],
        [fake("colocated", i, r) for i, r in enumerate(colocated)],
    )


def solved(prefill, decode, colocated):
    """The same replicas through max_flow, every prefill → decode route unlimited."""
    return max_flow(
        {a.id: a.capacity_rps for a in prefill},
        {a.id: a.capacity_rps for a in decode},
        {(p.id, d.id): math.inf for p in prefill for d in decode},
        {a.id: a.capacity_rps for a in colocated},
    )


def check_routes(flow, prefill, decode) -> None:
    """Routes join a prefill id to a decode id; each replica's routes add up to its flow."""
    ids_p, ids_d = {a.id for a in prefill}, {a.id for a in decode}
    assert all(p in ids_p and d in ids_d and rate > 0 for (p, d), rate in flow.routes.items())
    for a in prefill:
        assert sum(r for (p, _), r in flow.routes.items() if p == a.id) == pytest.approx(flow.replica_flow[a.id])
    for a in decode:
        assert sum(r for (_, d), r in flow.routes.items() if d == a.id) == pytest.approx(flow.replica_flow[a.id])


@pytest.mark.parametrize(
    ("prefill", "decode", "colocated"),
    [
        ([3.0, 5.0], [2.0, 4.0, 4.0], []),  # decode side larger: prefill binds
        ([6.0, 6.0], [2.0, 4.0], [1.0]),  # prefill side larger: decode binds
        ([2.0, 4.0], [3.0, 3.0], [1.0]),  # a tie: the max-flow's cut (nearest the source) is the prefill side
        ([1.0], [2.0], [5.0]),  # colocated carries most: it is the bottleneck
        ([3.0], [], [2.0]),  # no decode replica: only colocated serves (and is the cut)
        ([], [4.0], []),  # nothing serves
    ],
)
def test_the_free_flow_is_the_max_flow_with_unlimited_routes(prefill, decode, colocated) -> None:
    replicas = sides(prefill, decode, colocated)
    free, exact = free_flow(*replicas, details=True), solved(*replicas)
    assert free.value == pytest.approx(exact.value)
    # every replica of a side runs at the same utilisation; each side carries what the max-flow's does
    for side in (side for side in replicas if side):
        used = [free.replica_flow[a.id] / a.capacity_rps for a in side]
        assert used == pytest.approx([used[0]] * len(used))
        assert sum(free.replica_flow[a.id] for a in side) == pytest.approx(sum(exact.replica_flow[a.id] for a in side))
    assert free.cut_capacity == pytest.approx(exact.cut_capacity)
    assert free.bottleneck == exact.bottleneck
    check_routes(free, *replicas[:2])
    # up to ROUTE_MATRIX pairs every pair is routed, in proportion to both ends: a rank-one matrix
    if replicas[0] and replicas[1]:
        matrix = np.array([[free.routes[(p.id, d.id)] for d in replicas[1]] for p in replicas[0]])
        assert np.linalg.matrix_rank(matrix, tol=1e-9) == 1
    else:
        assert free.routes == {}


def test_a_free_network_with_nothing_to_send_has_no_routes() -> None:
    """Goodput 0 on the decode side (no batch meets the SLO): only the colocated replica serves."""
    prefill = [fake("prefill", 0, 5.0, goodput=4.0)]
    decode = [fake("decode", 0, 5.0, goodput=0.0)]
    colocated = [fake("colocated", 0, 5.0, goodput=1.5)]
    flow = free_flow(prefill, decode, colocated, details=True, goodput=True)
    assert flow.value == pytest.approx(1.5) and flow.routes == {}
    assert flow.replica_flow[colocated[0].id] == 1.5
    assert flow.replica_flow.get(prefill[0].id, 0.0) == 0.0 == flow.replica_flow.get(decode[0].id, 0.0)


@pytest.mark.parametrize(("n_prefill", "n_decode"), [(32, 32), (25, 41), (40, 33)])
def test_beyond_1024_pairs_the_free_routes_are_a_north_west_corner_split(n_prefill, n_decode) -> None:
    """32 × 32 = 1024 pairs: every pair routed. 25 × 41 = 1025 and more: at most |P| + |D| − 1 routes, each replica's
    routes still adding up to its flow."""
    rng = np.random.default_rng(n_prefill)
    replicas = sides(list(rng.uniform(1, 9, n_prefill)), list(rng.uniform(1, 9, n_decode)))
    flow = free_flow(*replicas, details=True)
    check_routes(flow, *replicas[:2])
    if n_prefill * n_decode <= 1024:
        assert len(flow.routes) == n_prefill * n_decode
    else:
        assert len(flow.routes) <= n_prefill + n_decode - 1
    assert flow.value == pytest.approx(solved(*replicas).value)


def test_the_north_west_corner_split_leaves_no_rounding_crumbs() -> None:
    """Rates of a tenth: the running differences leave float residues (~1e-17 requests/s), never a route."""
    prefill = [0.1, 0.2, 0.3] * 11
    decode = [0.3, 0.1, 0.2] * 11
    replicas = sides(prefill, decode)
    flow = free_flow(*replicas, details=True)
    assert len(replicas[0]) * len(replicas[1]) > 1024
    assert min(flow.routes.values()) > 1e-9
    check_routes(flow, *replicas[:2])


def test_goodput_flows_use_the_capacity_within_the_slo() -> None:
    p = fake("prefill", 0, 10.0, goodput=4.0)
    d = fake("decode", 0, 10.0, goodput=None)  # no SLO figure: nothing within it
    assert (p.rate(True), p.rate(False), d.rate(True), d.rate(False)) == (4.0, 10.0, 0.0, 10.0)
    c = cluster(node("a", "A100-80G", 2, nic=400), network=400)
    p, d = replica(c, "prefill", ["a/0"]), replica(c, "decode", ["a/1"])
    p, d = dataclasses.replace(p, goodput_rps=2.5), dataclasses.replace(d, goodput_rps=6.0)
    unlimited = lambda x, y: RouteTraffic((), math.inf)  # noqa: E731
    assert replica_flow(c, [p, d], unlimited, launchable=True, goodput=True).value == pytest.approx(2.5)
    assert replica_flow(c, [p, d], unlimited, launchable=True).value == pytest.approx(
        min(p.capacity_rps, d.capacity_rps)
    )


def test_a_route_limit_keeps_each_replicas_fastest_routes_only() -> None:
    """Three prefill and three decode replicas on one node, every route 1 request/s of its own (a stand-in
    traffic): all nine carry 9. With route_limit 1 each replica keeps one route, counted from both ends: the
    prefill replicas' picks all reach one decode replica, the decode replicas' picks all leave one prefill
    replica, 5 routes in all (their common pair counted once), so 5 requests/s. With route_limit 2 nothing is dropped:
    9 routes are within 2 per replica."""
    c = cluster(node("a", "A100-80G", 8))
    prefill = [replica(c, "prefill", [f"a/{i}"]) for i in range(3)]
    decode = [replica(c, "decode", [f"a/{i}"]) for i in range(3, 6)]
    assert min(a.capacity_rps for a in (*prefill, *decode)) > 3, "replicas never bind"
    one = lambda x, y: RouteTraffic((), 1.0)  # noqa: E731
    full = replica_flow(c, [*prefill, *decode], one, launchable=True)
    limited = replica_flow(c, [*prefill, *decode], one, launchable=True, route_limit=1)
    assert full.value == pytest.approx(9.0) and len(full.routes) == 9
    assert limited.value == pytest.approx(5.0) and len(limited.routes) == 5
    roomy = replica_flow(c, [*prefill, *decode], one, launchable=True, route_limit=2)  # 9 routes ≤ 2 × 6 replicas
    assert roomy.value == pytest.approx(9.0) and len(roomy.routes) == 9


def test_a_relaxed_flow_gives_each_partly_loaded_route_the_hubs_to_itself() -> None:
    """A prefill pipeline over a and b sends to two decode replicas on c, whose 10 Gbit/s NIC (9.3 requests/s) both
    routes cross in full. Exact: they share it, 9.3 (the oracle's LP). Relaxed (an upper bound for the search): each
    route gets its own arc as fast as the NIC allows it alone, 2 × 9.3, and the result says it is a bound."""
    c = cluster(node("a", "A100-80G", 1), node("b", "A100-80G", 1), node("c", "A100-80G", 2, nic=10), network=400)
    p = replica(c, "prefill", ["a/0"], ["b/0"])
    decode = [replica(c, "decode", ["c/0"]), replica(c, "decode", ["c/1"])]
    nic = gbps(10) / kv_bytes_per_request(c)
    assert p.capacity_rps > 2 * nic and decode[0].capacity_rps > nic, "the NIC binds"
    traffic = lambda x, y: route_traffic(c, x.layout, y.layout)  # noqa: E731
    exact = replica_flow(c, [p, *decode], traffic, launchable=True)
    relaxed = replica_flow(c, [p, *decode], traffic, launchable=True, relaxed=True)
    assert exact.value == pytest.approx(served_rps(c, [p, *decode])) == pytest.approx(nic)
    assert not exact.upper_bound
    # the linear program's min cut (from its duals) is the NIC: kv_transfer, adding up to the flow
    assert exact.bottleneck == "kv_transfer" and sum(exact.cut_capacity.values()) == pytest.approx(exact.value)
    assert relaxed.value == pytest.approx(2 * nic) and relaxed.upper_bound


def test_side_loads_of_a_route_without_an_arc_are_ignored() -> None:
    """Hub H (capacity 2) joins p0 and p1 to d; p1 also has an own arc (1 request/s) that loads H by half its flow:
    p0 + p1's hub flow + p1's own flow / 2 ≤ 2 gives 2.5 in all. A share given for p0 → d, which has no own arc,
    loads nothing (there is no flow it could be a share of): the value stays 2.5."""
    network = ({"p0": 3.0, "p1": 3.0}, {"d": 9.0}, {("p1", "d"): 1.0})
    arcs = dict(hubs={"H": 2.0}, hub_arcs=[("p0", "H"), ("p1", "H"), ("H", "d")])
    loaded = max_flow(*network, **arcs, shares={("p1", "d"): {"H": 0.5}})
    assert loaded.value == pytest.approx(2.5)
    stray = max_flow(*network, **arcs, shares={("p1", "d"): {"H": 0.5}, ("p0", "d"): {"H": 1.0}})
    assert stray.value == pytest.approx(2.5)


def test_flows_at_rounding_level_split_over_two_arcs_give_no_route() -> None:
    """max_flow works in integer units of total / 2³⁰ and calls a path flow below 1e-9 × total noise. Hub E carries
    2 units (above it) but splits them over two array arcs of 1 unit each (below it): the path peeling stops at E
    without a route, and the value is still the 2 units."""
    unit = 2.0 * 2.0**-30  # total = 2 (the decode side)
    pairs = PairArcs(["E"], ["I1", "I2"], np.array([0, 0]), np.array([0, 1]), np.array([1.2 * unit, 1.2 * unit]))
    flow = max_flow(
        {"p": 1.0},
        {"d1": 1.0, "d2": 1.0},
        {},
        hubs={"E": 2.5 * unit, "I1": 1.0, "I2": 1.0},
        hub_arcs=[("p", "E"), ("I1", "d1"), ("I2", "d2")],
        pairs=pairs,
    )
    assert flow.value == pytest.approx(2 * unit) and flow.routes == {}


def test_a_junction_carrying_the_whole_flow_is_never_the_cut() -> None:
    """p0, p1 (0.5 each) → junction H → d (1): the whole flow (the total, 2³⁰ integer units) crosses H's unlimited
    arc, which must still hold more than that; the cut is a replica side (the one nearest the source)."""
    arcs = [("p0", "H"), ("p1", "H"), ("H", "d")]
    flow = max_flow({"p0": 0.5, "p1": 0.5}, {"d": 1.0}, {}, hubs={"H": math.inf}, hub_arcs=arcs)
    assert flow.value == pytest.approx(1.0)
    assert flow.bottleneck == "prefill" and set(flow.cut_capacity) == {"prefill"}
