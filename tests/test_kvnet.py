"""KV traffic on NICs and links, counted once (issue 13): route shares, the flow network, evaluate.

Independent oracles: analytic shares and capacities; networkx's max-flow on a network of NIC and link
hubs built here from the cluster (single-node replicas, and one pipelined prefill replica, whose fixed
shares become scaled hub capacities); and, for any mix, a route-by-route linear program written here
(one variable per prefill→decode pair, one row per NIC and link) solved with scipy.
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import linprog

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.inputs.cluster import load_cluster
from planner.scheduler.assess import route_capacity
from planner.scheduler.kvload import route_traffic
from planner.scheduler.kvnet import kv_network
from planner.scheduler.maxflow import max_flow
from planner.scheduler.network import plan_flow

GBPS = 1e9 / 8


def cluster_text(nics: dict[str, int], links: dict[tuple[str, str], int], default: int = 100, gpu="H100-SXM") -> str:
    nodes = "\n".join(f"  - {{name: {n}, gpu: {gpu}, count: 2, nic: {g}Gbps}}" for n, g in nics.items())
    pairs = "\n".join(
        f"    - {{between: [{a}, {b}], bandwidth: {g}Gbps, latency: 10us}}" for (a, b), g in links.items()
    )
    return (
        "model: llama-3.1-8b\nworkload: {prompt_tokens: 1024, output_tokens: 128}\nnodes:\n"
        + nodes
        + f"\nnetwork:\n  default: {{bandwidth: {default}Gbps, latency: 10us}}\n  links:\n"
        + (pairs or "    []")
        + "\n"
    )


@pytest.fixture
def three_nodes(write_yaml, catalog):
    return load_cluster(write_yaml(cluster_text({"a": 100, "b": 100, "c": 25}, {})), catalog)


def test_a_pipelined_prefill_loads_each_nic_by_its_layers_and_the_receiving_nic_once(three_nodes, hand_replica):
    p = hand_replica(three_nodes, "prefill", ["a/0"], ["b/0"], split=[8])  # 8 layers on a, 24 on b
    d = hand_replica(three_nodes, "decode", ["c/0"])
    shares = dict(route_traffic(three_nodes, p.layout, d.layout).shares)
    assert shares == pytest.approx({"E:a": 0.25, "E:b": 0.75, "I:c": 1.0, "L:a|c": 0.25, "L:b|c": 0.75})
    per_request = kv_bytes_per_request(three_nodes)
    # c's 25 Gbit/s NIC takes the whole request: the route carries at most 25 Gbit/s of KV
    assert route_capacity(three_nodes, p, d, True) == pytest.approx(25 * GBPS / per_request)


def test_kv_that_stays_inside_a_node_crosses_no_nic(three_nodes, hand_replica):
    p = hand_replica(three_nodes, "prefill", ["a/0"], ["c/0"], split=[8])
    d = hand_replica(three_nodes, "decode", ["c/1"])
    traffic = route_traffic(three_nodes, p.layout, d.layout)
    assert dict(traffic.shares) == pytest.approx({"E:a": 0.25, "I:c": 0.25, "L:a|c": 0.25})
    nvlink = three_nodes.node_by_name["c"].intra_link.bandwidth
    assert traffic.own_rps == pytest.approx(nvlink / (0.75 * kv_bytes_per_request(three_nodes)))
    per_request = kv_bytes_per_request(three_nodes)
    assert route_capacity(three_nodes, p, d, True) == pytest.approx(25 * GBPS / (0.25 * per_request))


def test_two_prefill_nodes_feeding_one_decode_nic_share_it(three_nodes, hand_replica, hand_plan):
    """The issue's over-credit: each node pair's link used to count in full although all the KV enters c."""
    p = hand_replica(three_nodes, "prefill", ["a/0", "a/1"], ["b/0", "b/1"])
    d = hand_replica(three_nodes, "decode", ["c/0", "c/1"])
    plan = hand_plan(three_nodes, p, d)
    nic_c = 25 * GBPS / kv_bytes_per_request(three_nodes)
    assert plan.summary.throughput_rps == pytest.approx(min(nic_c, p.capacity_rps, d.capacity_rps))
    assert plan.summary.throughput_rps <= nic_c * (1 + 1e-9)


# ---------------------------------------------------------------- networkx oracle (single-node replicas)


def hub_graph(cluster, prefill, decode) -> nx.DiGraph:
    """source → P → E:a → L:a|b → I:b → D → sink (pairs on one node: their own arc), capacities in req/s."""
    per_request = kv_bytes_per_request(cluster)
    graph = nx.DiGraph()
    node_of = {a.id: cluster.gpu_by_id[a.layout.gpus[0]].node for a in (*prefill, *decode)}
    for p in prefill:
        graph.add_edge("s", p.id, capacity=p.capacity_rps)
        graph.add_edge(p.id, f"E:{node_of[p.id]}")
    for d in decode:
        graph.add_edge(f"I:{node_of[d.id]}+", d.id)
        graph.add_edge(d.id, "t", capacity=d.capacity_rps)
    for n in {node_of[a.id] for a in (*prefill, *decode)}:
        nic = cluster.node_by_name[n].nic / per_request
        graph.add_edge(f"E:{n}", f"E:{n}+", capacity=nic)
        graph.add_edge(f"I:{n}", f"I:{n}+", capacity=nic)
    for a, b in itertools.permutations({node_of[x.id] for x in (*prefill, *decode)}, 2):
        link = cluster.link(a, b)
        if link is not None:
            graph.add_edge(f"E:{a}+", f"L:{a}|{b}")
            graph.add_edge(f"L:{a}|{b}", f"L:{a}|{b}+", capacity=link.bandwidth / per_request)
            graph.add_edge(f"L:{a}|{b}+", f"I:{b}")
    for p in prefill:
        for d in decode:
            if node_of[p.id] == node_of[d.id]:
                graph.add_edge(p.id, f"own:{p.id}>{d.id}", capacity=route_capacity(cluster, p, d, True))
                graph.add_edge(f"own:{p.id}>{d.id}", d.id)
    return graph


def random_replicas(cluster, rng, hand_replica):
    """1–2 single-GPU replicas per node, each prefill or decode at random."""
    prefill, decode = [], []
    for node in cluster.nodes:
        for i in range(int(rng.integers(1, 3))):
            role = "prefill" if rng.random() < 0.5 else "decode"
            (prefill if role == "prefill" else decode).append(hand_replica(cluster, role, [f"{node.name}/{i}"]))
    return prefill, decode


@pytest.mark.parametrize("seed", range(12))
def test_single_node_replicas_match_networkx_over_nic_and_link_hubs(seed, write_yaml, catalog, hand_replica):
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"][: int(rng.integers(2, 5))]
    nics = {n: int(rng.choice([1, 10, 25, 100, 400])) for n in names}
    links = {pair: int(rng.choice([1, 5, 50, 400])) for pair in itertools.combinations(names, 2) if rng.random() < 0.5}
    cluster = load_cluster(write_yaml(cluster_text(nics, links, int(rng.choice([10, 100])))), catalog)
    prefill, decode = random_replicas(cluster, rng, hand_replica)
    flow = plan_flow(cluster, [*prefill, *decode], launchable=True)
    expected = nx.maximum_flow_value(hub_graph(cluster, prefill, decode), "s", "t")
    assert flow.value == pytest.approx(expected, rel=1e-6)


def test_one_pipelined_prefill_matches_networkx_with_scaled_hubs(write_yaml, catalog, hand_replica):
    """A lone prefill replica with fixed shares: hub H of capacity c carries share φ per request, so for it
    H is a hub of capacity c / φ; networkx solves that network."""
    text = cluster_text({"a": 10, "b": 40, "c": 25, "d": 100}, {("a", "c"): 5, ("b", "d"): 1})
    cluster = load_cluster(write_yaml(text), catalog)
    p = hand_replica(cluster, "prefill", ["a/0"], ["b/0"], split=[12])
    decode = [hand_replica(cluster, "decode", [f"{n}/0"]) for n in ("c", "d")]
    per_request = kv_bytes_per_request(cluster)
    graph = nx.DiGraph()
    graph.add_edge("s", "p", capacity=p.capacity_rps)
    phi = {"a": 12 / 32, "b": 20 / 32}
    senders = min(cluster.node_by_name[n].nic / per_request / phi[n] for n in phi)
    graph.add_edge("p", "E", capacity=senders)
    for d in decode:
        node = cluster.gpu_by_id[d.layout.gpus[0]].node
        wires = min(cluster.link(n, node).bandwidth / per_request / phi[n] for n in phi)
        graph.add_edge("E", d.id, capacity=min(wires, cluster.node_by_name[node].nic / per_request))
        graph.add_edge(d.id, "t", capacity=d.capacity_rps)
    flow = plan_flow(cluster, [p, *decode], launchable=True)
    assert flow.value == pytest.approx(nx.maximum_flow_value(graph, "s", "t"), rel=1e-6)


# ---------------------------------------------------------------- route-by-route LP oracle (any mix)


def route_lp(cluster, prefill, decode) -> float:
    """max Σ x_pd s.t. replica capacities, and Σ x_pd · (layers of p's stages on u) / L ≤ NIC out of u,
    into v, and link u→v (u ≠ v); own intra-node bounds. Shares computed here from the stages."""
    per_request = kv_bytes_per_request(cluster)
    layers = cluster.model.layers
    pairs = [(p, d) for p in prefill for d in decode]
    rows, caps = [], []
    for p in prefill:
        rows.append([1.0 if q is p else 0.0 for q, _ in pairs])
        caps.append(p.capacity_rps)
    for d in decode:
        rows.append([1.0 if e is d else 0.0 for _, e in pairs])
        caps.append(d.capacity_rps)
    resources: dict[tuple, list[float]] = {}
    for k, (p, d) in enumerate(pairs):
        v = cluster.gpu_by_id[d.layout.gpus[0]].node
        for stage in p.layout.stages:
            u = cluster.gpu_by_id[stage.gpus[0]].node
            if u == v:
                continue
            for key in (("out", u), ("in", v), ("link", u, v)):
                resources.setdefault(key, [0.0] * len(pairs))[k] += stage.layers / layers
    for key, row in sorted(resources.items()):
        link = key[0] == "link"
        bandwidth = cluster.link(key[1], key[2]).bandwidth if link else cluster.node_by_name[key[1]].nic
        rows.append(row)
        caps.append(bandwidth / per_request)
    bounds = [(0, route_traffic(cluster, p.layout, d.layout).own_rps) for p, d in pairs]
    result = linprog(-np.ones(len(pairs)), A_ub=np.array(rows), b_ub=np.array(caps), bounds=bounds, method="highs")
    return -result.fun


@pytest.mark.parametrize("seed", range(10))
def test_mixed_pipelines_match_a_route_by_route_lp(seed, write_yaml, catalog, hand_replica):
    rng = np.random.default_rng(100 + seed)
    names = ["a", "b", "c", "d"]
    nics = {n: int(rng.choice([5, 25, 100])) for n in names}
    links = {pair: int(rng.choice([1, 10, 50])) for pair in itertools.combinations(names, 2) if rng.random() < 0.4}
    cluster = load_cluster(write_yaml(cluster_text(nics, links, 100)), catalog)
    a, b = (str(x) for x in rng.choice(names, size=2, replace=False))
    prefill = [hand_replica(cluster, "prefill", [f"{a}/0"], [f"{b}/0"], split=[int(rng.integers(1, 32))])]
    rest = [n for n in names if n not in (a, b)]
    prefill.append(hand_replica(cluster, "prefill", [f"{rest[0]}/0"]))
    decode = [hand_replica(cluster, "decode", [f"{n}/1"]) for n in (a, rest[0], rest[1])]
    flow = plan_flow(cluster, [*prefill, *decode], launchable=True)
    assert flow.value == pytest.approx(route_lp(cluster, prefill, decode), rel=1e-6)
    # the routes the plan records load no NIC or link beyond its bandwidth
    load: dict[str, float] = {}
    by_id = {r.id: r for r in (*prefill, *decode)}
    for (p, d), rate in flow.routes.items():
        for hub, share in route_traffic(cluster, by_id[p].layout, by_id[d].layout).shares:
            load[hub] = load.get(hub, 0.0) + rate * share
    per_request = kv_bytes_per_request(cluster)
    for hub, used in load.items():
        name = hub[2:]
        if hub[0] == "L":
            u, v = name.split("|")
            bandwidth = cluster.link(u, v).bandwidth
        else:
            bandwidth = cluster.node_by_name[name].nic
        assert used <= bandwidth / per_request * (1 + 1e-6), hub


# ---------------------------------------------------------------- network structure


def test_hubs_that_can_never_bind_are_dropped_and_a_free_network_needs_no_flow(write_yaml, catalog, hand_replica):
    cluster = load_cluster(write_yaml(cluster_text({"a": 400, "b": 400}, {}, 400)), catalog)
    p = hand_replica(cluster, "prefill", ["a/0"])
    d = hand_replica(cluster, "decode", ["b/0"])
    network = kv_network(cluster, [p], [d], lambda x, y: route_traffic(cluster, x.layout, y.layout), launchable=True)
    assert network.free and network.direct == {} and not network.shares
    assert plan_flow(cluster, [p, d], launchable=True).value == pytest.approx(min(p.capacity_rps, d.capacity_rps))


def test_the_linear_program_without_side_loads_is_the_max_flow():
    prefill, decode = {"p0": 3.0, "p1": 2.0}, {"d0": 4.0}
    hubs = {"E:x": 2.5}
    arcs = [("p0", "E:x"), ("p1", "E:x"), ("E:x", "d0")]
    plain = max_flow(prefill, decode, {}, hubs=hubs, hub_arcs=arcs)
    # a zero side load forces the LP path without changing the problem
    lp = max_flow(prefill, decode, {("p1", "d0"): 1.0}, hubs=hubs, hub_arcs=arcs, shares={("p1", "d0"): {"E:x": 0.0}})
    assert plain.value == pytest.approx(2.5)
    assert lp.value == pytest.approx(3.5)  # p1 also has its own 1 req/s arc
    assert sum(lp.cut_capacity.values()) == pytest.approx(lp.value)
