"""The KV part of the flow network (scheduler.kvnet, kvload, network): against the oracle of tests/oracles.py
(networkx max-flow with every NIC and wire a shared vertex; a linear program once a pipeline spans nodes), on small
random clusters (hypothesis) and on hand-computed cases. tests/test_kvnet.py checks the route shares themselves."""

from __future__ import annotations

import pytest
from builders import cluster, gbps, hf_config, layout, node, replica
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import kv_bytes_per_request, served_lp, served_rps

from planner.scheduler.assess import Assessment, assess
from planner.scheduler.kvload import route_traffic
from planner.scheduler.kvnet import kv_network
from planner.scheduler.network import plan_flow, replica_flow
from planner.scheduler.scoring import Scorer

GPUS = ("A100-80G", "L40", "H100-SXM")


@st.composite
def small_problems(draw) -> tuple:
    """2–3 nodes of 1, 2 or 4 GPUs; NICs and wires from 5 to 400 Gbit/s (KV-bound cases included); replicas of
    TP 1, 2 or 4 (all divide one another) in random roles, sometimes a prefill pipeline across two nodes."""
    n = draw(st.integers(2, 3))
    nodes = [
        node(
            f"n{i}",
            draw(st.sampled_from(GPUS)),
            draw(st.sampled_from([1, 2, 4])),
            nic=draw(st.sampled_from([5, 10, 25, 400])),
        )
        for i in range(n)
    ]
    links = [(f"n{i}", f"n{j}", draw(st.sampled_from([5, 10, 50]))) for i in range(n) for j in range(i + 1, n)]
    c = cluster(
        *nodes,
        network=draw(st.sampled_from([10, 100])),
        links=draw(st.lists(st.sampled_from(links), unique=True, max_size=2)),
        prompt=draw(st.sampled_from([512, 2048])),
    )
    free = {spec["name"]: [f"{spec['name']}/{i}" for i in range(spec["count"])] for spec in nodes}
    layouts: list[tuple[str, list[list[str]]]] = []
    if draw(st.booleans()):  # a prefill pipeline: the last GPU of n0 then the last GPU of n1
        layouts.append(("prefill", [[free["n0"].pop()], [free["n1"].pop()]]))
    groups = []
    for gpus in free.values():
        while gpus:
            size = draw(st.sampled_from([s for s in (1, 2, 4) if s <= len(gpus)]))
            groups.append(gpus[:size])
            gpus[:] = gpus[size:]
    roles = draw(st.lists(st.sampled_from(["prefill", "decode", "idle"]), min_size=len(groups), max_size=len(groups)))
    if len(groups) >= 2:  # at least one of each role, so that most examples carry flow
        if "prefill" not in roles:
            roles[0] = "prefill"
        if "decode" not in roles:
            roles[-1] = "decode"
    layouts += [(role, [group]) for role, group in zip(roles, groups) if role != "idle"]
    replicas = []
    for role, stages in layouts:
        found = assess(c, role, layout(c.model.layers, *stages))  # type: ignore[arg-type]
        if found is not None:
            replicas.append(found)
    return c, replicas


def _close(value: float, expected: float) -> bool:
    """max_flow rounds capacities to integers at 2³⁰ / total: a relative error far below 1e-6."""
    return value == pytest.approx(expected, rel=1e-6, abs=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_plan_flow_matches_the_networkx_oracle_with_nic_and_wire_hubs(problem) -> None:
    c, replicas = problem
    expected = served_rps(c, replicas)
    flow = plan_flow(c, replicas, launchable=True)
    assert _close(flow.value, expected)
    assert flow.value <= expected * (1 + 1e-9) + 1e-12, "rounding never overstates what the links carry"
    for method in ("dinic", "edmonds_karp"):
        value = replica_flow(
            c,
            replicas,
            lambda p, d: route_traffic(c, p.layout, d.layout),
            launchable=True,
            method=method,
            details=False,
        ).value
        assert _close(value, expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_the_scorers_flow_is_the_oracles(problem) -> None:
    """The search scores states with the same network (Dinic, cached route capacities) over its own layouts."""
    c, replicas = problem
    scorer = Scorer(c, launchable=True, objective="throughput")
    state = [(a.layout.gpus, a.role) for a in replicas]
    live = [a for group, role in state if (a := scorer.assessment(group, role)) is not None]
    assert _close(scorer.score(state).throughput_rps, served_rps(c, live))


# ----------------------------------------------------------------------------- hand-computed cases

PROMPT = 1024


def kv_bound_cluster(nic_a: float = 10, nic_b: float = 400, wire_ab: float = 400):
    return cluster(
        node("a", "A100-80G", 4, nic=nic_a), node("b", "A100-80G", 4, nic=nic_b), network=wire_ab, prompt=PROMPT
    )


def test_senders_on_one_node_share_its_nic() -> None:
    """Two prefill replicas on node a, two decode replicas on node b: every route leaves through a's 10 Gbit/s NIC,
    so together they carry NIC ÷ KV bytes per request — not twice that (one own arc per route would say 4×)."""
    c = kv_bound_cluster()
    prefill = [replica(c, "prefill", [f"a/{i}"]) for i in (0, 1)]
    decode = [replica(c, "decode", [f"b/{i}"]) for i in (0, 1)]
    nic = gbps(10) / kv_bytes_per_request(c)
    assert nic < min(sum(a.capacity_rps for a in prefill), sum(a.capacity_rps for a in decode)), "KV-bound case"
    flow = plan_flow(c, [*prefill, *decode], launchable=True)
    assert _close(flow.value, nic)
    assert flow.bottleneck == "kv_transfer"
    assert _close(sum(flow.routes.values()), nic)


def test_receivers_on_one_node_share_its_nic() -> None:
    c = kv_bound_cluster(nic_a=400, nic_b=10)
    prefill = [replica(c, "prefill", [f"a/{i}"]) for i in (0, 1)]
    decode = [replica(c, "decode", [f"b/{i}"]) for i in (0, 1)]
    assert _close(plan_flow(c, [*prefill, *decode], launchable=True).value, gbps(10) / kv_bytes_per_request(c))


def test_a_slow_wire_between_fast_nics_is_the_hub_that_binds() -> None:
    c = kv_bound_cluster(nic_a=400, nic_b=400, wire_ab=10)
    prefill = [replica(c, "prefill", [f"a/{i}"]) for i in (0, 1)]
    decode = [replica(c, "decode", [f"b/{i}"]) for i in (0, 1)]
    network = kv_network(c, prefill, decode, lambda p, d: route_traffic(c, p.layout, d.layout), launchable=True)
    assert network.direct == {}, "every route between the two single-node sides goes through the hubs"
    assert _close(plan_flow(c, [*prefill, *decode], launchable=True).value, gbps(10) / kv_bytes_per_request(c))


def test_one_nic_serves_traffic_to_two_nodes() -> None:
    """Node a sends to b and to c: both wires are fast, a's NIC is shared by the two destinations."""
    c = cluster(
        node("a", "A100-80G", 2, nic=10), node("b", "A100-80G", 2), node("c", "A100-80G", 2), network=400, prompt=PROMPT
    )
    replicas = [
        replica(c, "prefill", ["a/0"]),
        replica(c, "prefill", ["a/1"]),
        replica(c, "decode", ["b/0"]),
        replica(c, "decode", ["c/0"]),
    ]
    expected = gbps(10) / kv_bytes_per_request(c)
    assert _close(plan_flow(c, replicas, launchable=True).value, expected)
    assert _close(served_rps(c, replicas), expected)


def test_routes_inside_a_node_do_not_use_the_nic() -> None:
    """Prefill and decode on node a: the KV copy goes over NVLink, so a 5 Gbit/s NIC does not limit it."""
    c = cluster(node("a", "A100-80G", 2, nic=5), node("b", "A100-80G", 2, nic=5), prompt=PROMPT)
    p, d = replica(c, "prefill", ["a/0"]), replica(c, "decode", ["a/1"])
    network = kv_network(c, [p], [d], lambda x, y: route_traffic(c, x.layout, y.layout), launchable=True)
    assert not any(hub[0] in "EIL" for hub in network.hubs), "no NIC or wire is a hub"
    assert not any(shares for shares in network.shares.values())
    assert _close(plan_flow(c, [p, d], launchable=True).value, min(p.capacity_rps, d.capacity_rps))


def test_tp_sizes_that_do_not_divide_have_no_route_with_a_connector() -> None:
    """TP 3 and TP 2 would need a connector that reshards; without one (connector none) the route exists."""
    c = cluster(node("a", "A100-80G", 3), node("b", "A100-80G", 2), model=hf_config(heads=12, kv_heads=12))
    p, d = replica(c, "prefill", ["a/0", "a/1", "a/2"]), replica(c, "decode", ["b/0", "b/1"])
    assert plan_flow(c, [p, d], launchable=True).value == 0.0
    assert served_rps(c, [p, d], launchable=True) == 0.0
    assert plan_flow(c, [p, d], launchable=False).value > 0.0
    assert _close(plan_flow(c, [p, d], launchable=False).value, served_rps(c, [p, d], launchable=False))


def test_a_colocated_replica_needs_no_kv_route() -> None:
    c = cluster(node("a", "A100-80G", 2, nic=5), prompt=PROMPT)
    colocated: Assessment = replica(c, "colocated", ["a/0"])
    flow = plan_flow(c, [colocated], launchable=True)
    assert _close(flow.value, colocated.capacity_rps) and flow.routes == {}


def test_without_a_connector_a_decode_pipeline_across_nodes_loads_the_nics_by_its_layers() -> None:
    """Connector none allows decode PP > 1: a decode pipeline over nodes a and b takes KV from a single-node
    prefill replica on c, half its layers over each of a's and b's NICs and the whole of it out of c's."""
    c = cluster(node("a", "A100-80G", 1), node("b", "A100-80G", 1), node("c", "A100-80G", 2, nic=10), prompt=PROMPT)
    p = replica(c, "prefill", ["c/0"])
    d = replica(c, "decode", ["a/0"], ["b/0"])
    assert dict(route_traffic(c, p.layout, d.layout).shares) == pytest.approx(
        {"E:c": 1.0, "I:a": 0.5, "I:b": 0.5, "L:c|a": 0.5, "L:c|b": 0.5}
    )
    flow = plan_flow(c, [p, d], launchable=False)
    assert flow.value > 0 and _close(flow.value, served_rps(c, [p, d], launchable=False))
    spanning_p = replica(c, "prefill", ["a/0"], ["b/0"])
    single_d = replica(c, "decode", ["c/1"])
    assert _close(plan_flow(c, [spanning_p, single_d, d], launchable=False).value,
                  served_rps(c, [spanning_p, single_d, d], launchable=False))  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_the_oracles_flow_network_and_linear_program_agree(problem) -> None:
    """The two halves of the oracle check each other where both apply (every replica on one node)."""
    c, replicas = problem
    single = [a for a in replicas if len({g.split("/")[0] for g in a.layout.gpus}) == 1]
    assert _close(served_lp(c, single), served_rps(c, single))
