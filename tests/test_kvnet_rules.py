"""scheduler.kvnet and scheduler.kvload, rule by rule: hand-built clusters that land on one rule each of the KV
network (which hubs are dropped, which node pairs are pooled, when a value-only network needs no arcs, a wire that
pooled and explicit routes share). Every flow value is checked against the independent oracle of tests/oracles.py
(networkx max-flow over NIC and wire vertices, or its route-by-route LP once a pipeline spans nodes); structural
facts (no arc, no hub) are the module docstring's promises, checked where the value alone cannot tell.

KV of one mean request here (llama-3.1-8b, 1024-token prompt): 1024 × 32 layers × 2·8·128·2 B = 134 MB, so
1 Gbit/s carries 0.93 requests/s; a 1-GPU A100 prefill replica serves ~15.8 requests/s, a decode one ~20.7.
"""

from __future__ import annotations

import pytest
from builders import cluster, gbps, hf_config, node, replica
from oracles import kv_bytes_per_request, served_rps

from planner.scheduler.kvload import hub_capacity, route_traffic
from planner.scheduler.kvnet import kv_network
from planner.scheduler.network import plan_flow, replica_flow


def traffic_of(c):
    return lambda p, d: route_traffic(c, p.layout, d.layout)


def close(value: float, expected: float) -> bool:
    return value == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("c_to_b", [400, 2])
def test_a_wire_shared_by_a_pooled_pair_and_a_pipeline_is_one_hub(c_to_b) -> None:
    """a → b is a 5 Gbit/s wire between 400 Gbit/s NICs. p1 (on a) reaches b's decode replicas over it as a pooled
    pair; p2, pipelined over a and c, sends half its KV (its layers on a) over the same wire. One wire, one
    capacity: p1 + p2 / 2 ≤ 4.66 requests/s, so the best is p2 alone at 9.31 (the oracle's LP) — a second, parallel
    arc for the pooled pair would add another 4.66. With a 2 Gbit/s wire c → b (p2 ≤ 2 × 1.86 = 3.73 over its other
    half) p1 takes the rest of a → b: 4.66 − 3.73 / 2 + 3.73 = 6.52, which needs p1's path through the wire hub."""
    c = cluster(
        *(node(n, "A100-80G", 2, nic=400) for n in "abc"), network=400, links=[("a", "b", 5), ("c", "b", c_to_b)]
    )
    p1, p2 = replica(c, "prefill", ["a/0"]), replica(c, "prefill", ["a/1"], ["c/0"])
    decode = [replica(c, "decode", ["b/0"]), replica(c, "decode", ["b/1"])]
    wire = gbps(5) / kv_bytes_per_request(c)
    assert p2.capacity_rps > 2 * wire and p1.capacity_rps > wire, "wire-bound case"
    flow = plan_flow(c, [p1, p2, *decode], launchable=True)
    assert close(flow.value, served_rps(c, [p1, p2, *decode]))
    other = gbps(c_to_b) / kv_bytes_per_request(c) / 0.5  # p2's bound from its half over c → b
    assert close(flow.value, 2 * wire if other > 2 * wire else wire - other / 2 + other)


def four_nodes(wire: float):
    """Prefill replicas on a and b, decode on c and d, every wire `wire` Gbit/s, NICs 400."""
    c = cluster(*(node(n, "A100-80G", 1, nic=400) for n in "abcd"), network=wire)
    return c, [replica(c, "prefill", [f"{n}/0"]) for n in "ab"], [replica(c, "decode", [f"{n}/0"]) for n in "cd"]


def test_a_value_only_network_skips_arcs_only_when_the_proportional_flow_fits_every_wire() -> None:
    """12 Gbit/s wires (11.2 requests/s): each could bind (a sender alone pushes 15.8), but spreading each sender
    over both receivers in proportion puts 15.8 · 20.7 / 41.4 = 7.9 on each, so min(ΣP, ΣD) flows and a value-only
    caller gets an arc-free `unconstrained` network; the default (routes wanted) keeps the arcs."""
    c, prefill, decode = four_nodes(12)
    routed = kv_network(c, prefill, decode, traffic_of(c), launchable=True)
    bare = kv_network(c, prefill, decode, traffic_of(c), launchable=True, value_only=True)
    assert not routed.unconstrained and routed.pairs is not None and len(routed.pairs.rows) == 4
    assert bare.unconstrained and not bare.hub_arcs and not bare.free
    expected = served_rps(c, [*prefill, *decode])
    assert close(expected, sum(a.capacity_rps for a in prefill))
    assert close(plan_flow(c, [*prefill, *decode], launchable=True).value, expected)
    assert close(replica_flow(c, [*prefill, *decode], traffic_of(c), launchable=True, details=False).value, expected)


@pytest.mark.parametrize("wire", [5, 8])
def test_a_value_only_network_solves_the_flow_when_the_wires_bind(wire) -> None:
    """5 and 8 Gbit/s wires (4.7, 7.5 requests/s) are below the proportional 7.9 per wire: the wires bind, and the
    value-only flow (no routes) is the oracle's, not min(ΣP, ΣD)."""
    c, prefill, decode = four_nodes(wire)
    expected = served_rps(c, [*prefill, *decode])
    assert expected < sum(a.capacity_rps for a in prefill) * (1 - 1e-3), "KV-bound case"
    for method in ("dinic", "edmonds_karp"):
        value = replica_flow(c, [*prefill, *decode], traffic_of(c), launchable=True, method=method, details=False)
        assert close(value.value, expected)


def pipeline_to(nic_c: float, nic_a: float = 200):
    """A prefill pipeline over a and b (16 layers each, ~31.6 requests/s) sending to a decode replica on c."""
    c = cluster(
        node("a", "A100-80G", 1, nic=nic_a), node("b", "A100-80G", 1), node("c", "A100-80G", 1, nic=nic_c), network=400
    )
    return c, replica(c, "prefill", ["a/0"], ["b/0"]), replica(c, "decode", ["c/0"])


def test_a_hub_only_explicit_routes_cross_is_dropped_when_it_cannot_bind() -> None:
    """c's 30 Gbit/s NIC carries 27.9 requests/s; at most min(31.6, 20.7) = 20.7 can ever enter it (the decode
    replica's capacity), so it cannot bind — though it is below twice that, and below what the prefill side could
    send: no hub is left and the network is free (module docstring)."""
    c, p, d = pipeline_to(30)
    nic = gbps(30) / kv_bytes_per_request(c)
    assert d.capacity_rps < nic < min(p.capacity_rps, 2 * d.capacity_rps), "the NIC lies where the rule matters"
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.free and not any(h[0] in "EIL" for h in network.hubs)
    assert close(plan_flow(c, [p, d], launchable=True).value, served_rps(c, [p, d]))


def test_a_sending_nic_is_loaded_by_the_share_of_the_kv_leaving_it() -> None:
    """a's 15 Gbit/s NIC (14.0 requests/s) sends half of each request's KV: at most 20.7 / 2 = 10.3 can leave it, so
    it cannot bind (a whole request per route would say it can) and the network is free."""
    c, p, d = pipeline_to(400, nic_a=15)
    nic = gbps(15) / kv_bytes_per_request(c)
    assert d.capacity_rps / 2 < nic < d.capacity_rps
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.free
    assert close(plan_flow(c, [p, d], launchable=True).value, served_rps(c, [p, d]))


def test_a_hub_only_explicit_routes_cross_binds_below_their_load() -> None:
    c, p, d = pipeline_to(10)
    nic = gbps(10) / kv_bytes_per_request(c)
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.hubs == {"I:c": pytest.approx(nic)} and not network.free
    assert close(plan_flow(c, [p, d], launchable=True).value, served_rps(c, [p, d]))
    assert close(served_rps(c, [p, d]), nic)


def no_link_b_c():
    """a–b and a–c are linked (100 Gbit/s), b–c is not."""
    return cluster(*(node(n, "A100-80G", 1) for n in "abc"), network=None, links=[("a", "c", 100), ("a", "b", 100)])


def test_a_missing_link_carries_nothing() -> None:
    c = no_link_b_c()
    assert hub_capacity(c, "L:b|c") == 0.0
    assert close(hub_capacity(c, "L:a|c"), gbps(100) / kv_bytes_per_request(c))
    assert close(hub_capacity(c, "E:b"), gbps(200) / kv_bytes_per_request(c)), "builders' default NIC"


def test_a_route_over_a_missing_link_gets_no_arc() -> None:
    """A pipeline over a and b sends half its KV from b to c, where no link exists: the route does not exist
    (no own arc, no hub of capacity 0), as for the oracle."""
    c = no_link_b_c()
    p, d = replica(c, "prefill", ["a/0"], ["b/0"]), replica(c, "decode", ["c/0"])
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.direct == {} and network.hubs == {}
    assert plan_flow(c, [p, d], launchable=True).value == 0.0 == served_rps(c, [p, d])


def test_nodes_without_a_link_are_not_a_pooled_pair() -> None:
    c = no_link_b_c()
    p, d = replica(c, "prefill", ["b/0"]), replica(c, "decode", ["c/0"])
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.pairs is not None and len(network.pairs.rows) == 0 and not network.hub_arcs
    assert plan_flow(c, [p, d], launchable=True).value == 0.0


def test_pooled_nics_and_wires_just_above_their_most_are_dropped() -> None:
    """Prefill on a (15.8 requests/s), decode on b (20.7). a's 25 Gbit/s NIC (23.3), b's 30 Gbit/s NIC (27.9) and the
    20 Gbit/s wire (18.6, slower than both NICs) each carry more than can ever cross them (15.8, 20.7 — and the wire
    at most the smaller, 15.8), though less than twice that: none can bind, so none is a hub and the network is free.
    A 15 Gbit/s wire (14.0) binds: it becomes the capacity of the pair's arc."""
    c = cluster(node("a", "A100-80G", 1, nic=25), node("b", "A100-80G", 1, nic=30), network=20)
    p, d = replica(c, "prefill", ["a/0"]), replica(c, "decode", ["b/0"])
    per_request = kv_bytes_per_request(c)
    assert p.capacity_rps < gbps(20) / per_request < 2 * p.capacity_rps
    assert p.capacity_rps < gbps(25) / per_request < 2 * p.capacity_rps
    assert d.capacity_rps < gbps(30) / per_request < 2 * d.capacity_rps
    network = kv_network(c, [p], [d], traffic_of(c), launchable=True)
    assert network.free and network.direct == {}
    assert close(plan_flow(c, [p, d], launchable=True).value, served_rps(c, [p, d]))
    slow = cluster(node("a", "A100-80G", 1, nic=25), node("b", "A100-80G", 1, nic=30), network=15)
    p, d = replica(slow, "prefill", ["a/0"]), replica(slow, "decode", ["b/0"])
    network = kv_network(slow, [p], [d], traffic_of(slow), launchable=True)
    assert not network.free and network.pairs is not None
    assert network.pairs.caps.tolist() == pytest.approx([gbps(15) / per_request]), "the 15 Gbit/s wire binds"
    assert close(plan_flow(slow, [p, d], launchable=True).value, served_rps(slow, [p, d]))


def test_node_pairs_with_a_replica_pair_that_cannot_talk_route_each_pair_on_its_own() -> None:
    """A toy model (12 KV heads) lets TP 3 send to TP 1 but not to TP 2. p3 (TP 3, node a) reaches only d1 (TP 1, c,
    313 requests/s); p1 (TP 1, node e, whose 25 Gbit/s NIC carries 248) reaches both. So a → b is no pooled pair:
    248 + 313 = 562 with the connector's rule; without it p3 also feeds d2 (478 on b): 478 + 313 = 792."""
    c = cluster(
        node("a", "A100-80G", 3),
        node("e", "A100-80G", 1, nic=25),
        node("b", "A100-80G", 2),
        node("c", "A100-80G", 1),
        model=hf_config(heads=12, kv_heads=12),
        network=400,
    )
    p1, p3 = replica(c, "prefill", ["e/0"]), replica(c, "prefill", ["a/0", "a/1", "a/2"])
    d2, d1 = replica(c, "decode", ["b/0", "b/1"]), replica(c, "decode", ["c/0"])
    nic_e = gbps(25) / kv_bytes_per_request(c)
    assert min(p1.capacity_rps, p3.capacity_rps) > d1.capacity_rps + d2.capacity_rps, "decode and e's NIC bind"
    ruled = plan_flow(c, [p1, p3, d2, d1], launchable=True)
    assert close(ruled.value, served_rps(c, [p1, p3, d2, d1], launchable=True))
    assert close(ruled.value, nic_e + d1.capacity_rps)
    assert (p3.id, d2.id) not in ruled.routes
    free = plan_flow(c, [p1, p3, d2, d1], launchable=False)
    assert close(free.value, served_rps(c, [p1, p3, d2, d1], launchable=False))
    assert close(free.value, d1.capacity_rps + d2.capacity_rps)


def test_a_replica_loads_a_hub_by_its_largest_share_among_its_routes() -> None:
    """Decode d (TP 2 on c, 39.2 requests/s) takes KV from p (over a and b: all of it enters c) and from q (over a
    and c: only a's quarter enters c). c's 20 Gbit/s NIC (18.6) can bind: p + q / 4 ≤ 18.6 with q ≤ 21.1 leaves
    p = 13.4, so 34.4 in all (the oracle's LP) — though d at q's share alone (39.2 / 4 = 9.8) would never fill it."""
    c = cluster(node("a", "A100-80G", 2), node("b", "A100-80G", 1), node("c", "A100-80G", 3, nic=20), network=400)
    p = replica(c, "prefill", ["a/0"], ["b/0"], split=[8])
    q = replica(c, "prefill", ["a/1"], ["c/2"], split=[8])
    d = replica(c, "decode", ["c/0", "c/1"])
    nic = gbps(20) / kv_bytes_per_request(c)
    assert d.capacity_rps / 4 < nic < q.capacity_rps / 4 + p.capacity_rps, "the rule decides whether the NIC binds"
    flow = plan_flow(c, [p, q, d], launchable=True)
    assert close(flow.value, served_rps(c, [p, q, d]))
    assert close(flow.value, q.capacity_rps + nic - q.capacity_rps / 4)


def test_a_wire_the_pooled_pair_alone_cannot_fill_binds_with_a_pipelines_share() -> None:
    """a → b at 20 Gbit/s (18.6 requests/s): p1 alone (15.8) cannot fill it, p2's half (≤ 15.8) alone cannot either,
    together they can: p1 + p2 / 2 ≤ 18.6 with p2 ≤ 31.6 gives 2.8 + 31.6 = 34.4 (the oracle's LP), not the 41.4
    the decode replicas could take."""
    c = cluster(*(node(n, "A100-80G", 2, nic=400) for n in "abc"), network=400, links=[("a", "b", 20)])
    p1, p2 = replica(c, "prefill", ["a/0"]), replica(c, "prefill", ["a/1"], ["c/0"])
    decode = [replica(c, "decode", ["b/0"]), replica(c, "decode", ["b/1"])]
    wire = gbps(20) / kv_bytes_per_request(c)
    assert p1.capacity_rps < wire and p2.capacity_rps / 2 < wire < p1.capacity_rps + p2.capacity_rps / 2
    flow = plan_flow(c, [p1, p2, *decode], launchable=True)
    assert close(flow.value, served_rps(c, [p1, p2, *decode]))
    assert close(flow.value, wire + p2.capacity_rps / 2)
    # the pooled pair alone fits the wire, so only the pipeline's share tells a value-only caller that it binds
    bare = replica_flow(c, [p1, p2, *decode], traffic_of(c), launchable=True, details=False)
    assert close(bare.value, flow.value)
