"""planner.scheduler.maxflow.max_flow against networkx's Edmonds–Karp, with the shared invariant checks.

Invariants (as in networkx's own flow tests): conservation at every replica, 0 ≤ flow ≤ capacity
on every arc, and the capacity of the minimum cut equals the flow value.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from networkx.algorithms.flow import edmonds_karp

from planner.scheduler.maxflow import FlowResult, max_flow

Network = tuple[dict[str, float], dict[str, float], dict[tuple[str, str], float], dict[str, float]]


def random_network(rng: np.random.Generator) -> Network:
    """1–5 prefill, 1–5 decode, 0–2 colocated replicas; each P→D pair linked with probability 0.6."""
    prefill = {f"p{i}": float(rng.uniform(0.05, 20)) for i in range(rng.integers(1, 6))}
    decode = {f"d{i}": float(rng.uniform(0.05, 20)) for i in range(rng.integers(1, 6))}
    colocated = {f"c{i}": float(rng.uniform(0.05, 20)) for i in range(rng.integers(0, 3))}
    kv = {(p, d): float(rng.uniform(0.01, 15)) for p in prefill for d in decode if rng.random() < 0.6}
    return prefill, decode, kv, colocated


def oracle(prefill, decode, kv, colocated) -> float:
    graph = nx.DiGraph()
    for rid, cap in {**prefill, **colocated}.items():
        graph.add_edge("s", f"{rid}:in", capacity=cap)
        graph.add_edge(f"{rid}:in", f"{rid}:out", capacity=cap)
    for rid, cap in {**decode, **colocated}.items():
        graph.add_edge(f"{rid}:in", f"{rid}:out", capacity=cap)
        graph.add_edge(f"{rid}:out", "t", capacity=cap)
    for (p, d), cap in kv.items():
        graph.add_edge(f"{p}:out", f"{d}:in", capacity=cap)
    graph.add_nodes_from(["s", "t"])
    return nx.maximum_flow_value(graph, "s", "t", flow_func=edmonds_karp)


def tolerance(prefill, decode, kv, colocated) -> float:
    """max_flow floors capacities to integers at 2³⁰ / total: each arc may lose total / 2³⁰."""
    total = max(sum(prefill.values()), sum(decode.values())) + sum(colocated.values())
    return 1e-7 * max(total, 1e-12)


def check_invariants(result: FlowResult, prefill, decode, kv, colocated) -> None:
    tol = tolerance(prefill, decode, kv, colocated)
    # 0 ≤ flow ≤ capacity
    for rid, cap in {**prefill, **decode, **colocated}.items():
        assert -tol <= result.replica_flow[rid] <= cap + tol
    for pair, rate in result.routes.items():
        assert pair in kv and 0 < rate <= kv[pair] + tol
    # conservation: what enters a prefill replica leaves on its routes, what enters a decode replica came on routes
    for p in prefill:
        assert result.replica_flow[p] == pytest.approx(sum(r for (a, _), r in result.routes.items() if a == p), abs=tol)
    for d in decode:
        assert result.replica_flow[d] == pytest.approx(sum(r for (_, b), r in result.routes.items() if b == d), abs=tol)
    served = sum(result.replica_flow[r] for r in colocated)
    assert result.value == pytest.approx(sum(result.replica_flow[p] for p in prefill) + served, abs=tol)
    assert result.value == pytest.approx(sum(result.replica_flow[d] for d in decode) + served, abs=tol)
    # max-flow = min-cut
    assert sum(result.cut_capacity.values()) == pytest.approx(result.value, abs=tol)
    if result.cut_capacity:
        assert result.bottleneck == max(result.cut_capacity, key=lambda k: (result.cut_capacity[k], k))


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("method", ["edmonds_karp", "dinic"])
def test_matches_networkx_on_seeded_random_networks(seed, method):
    network = random_network(np.random.default_rng(seed))
    result = max_flow(*network, method=method)
    assert result.value == pytest.approx(oracle(*network), abs=tolerance(*network))
    assert result.value <= oracle(*network) + 1e-12  # rounding never overstates throughput
    check_invariants(result, *network)


_caps = st.floats(min_value=0.01, max_value=100.0, allow_nan=False)


@st.composite
def networks(draw) -> Network:
    prefill = {f"p{i}": draw(_caps) for i in range(draw(st.integers(0, 4)))}
    decode = {f"d{i}": draw(_caps) for i in range(draw(st.integers(0, 4)))}
    colocated = {f"c{i}": draw(_caps) for i in range(draw(st.integers(0, 2)))}
    pairs = [(p, d) for p in prefill for d in decode]
    linked = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    kv = {pair: draw(_caps) for pair in linked}
    return prefill, decode, kv, colocated


@settings(max_examples=150, deadline=None)
@given(networks())
def test_flow_oracle_property(network):
    result = max_flow(*network)
    assert result.value == pytest.approx(oracle(*network), abs=tolerance(*network))
    assert result.value <= oracle(*network) + 1e-12  # rounding never overstates throughput
    check_invariants(result, *network)


def test_deterministic_regardless_of_dict_order():
    prefill, decode, kv, colocated = random_network(np.random.default_rng(7))
    a = max_flow(prefill, decode, kv, colocated)
    b = max_flow(dict(reversed(prefill.items())), dict(reversed(decode.items())), dict(reversed(kv.items())), colocated)
    assert a == b


def test_bottleneck_kinds():
    assert max_flow({"p": 1.0}, {"d": 10.0}, {("p", "d"): 10.0}).bottleneck == "prefill"
    assert max_flow({"p": 10.0}, {"d": 1.0}, {("p", "d"): 10.0}).bottleneck == "decode"
    kv_bound = max_flow({"p": 10.0}, {"d": 10.0}, {("p", "d"): 1.0})
    assert kv_bound.bottleneck == "kv_transfer" and kv_bound.value == pytest.approx(1.0)
    assert kv_bound.routes == {("p", "d"): pytest.approx(1.0)}


def test_degenerate_networks():
    assert max_flow({}, {}, {}).value == 0.0
    none = max_flow({"p": 5.0}, {"d": 5.0}, {})  # no route between them
    assert none.value == 0.0 and none.routes == {}
    ignored = max_flow({"p": 5.0}, {"d": 5.0}, {("p", "d"): 0.0, ("p", "x"): 3.0, ("y", "d"): 3.0})
    assert ignored.value == 0.0
    alone = max_flow({}, {}, {}, {"c": 2.5})
    assert alone.value == pytest.approx(2.5) and alone.bottleneck == "colocated"
