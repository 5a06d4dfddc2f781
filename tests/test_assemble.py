"""A plan's figures from hand-built replicas (plans.assemble through the public `evaluate`), each checked against an
expectation computed here: the rate by hand or by the networkx oracle, latencies and prices from the replicas'
own figures and the links. Not a comparison of the assembler with itself."""

from __future__ import annotations

import pytest
from builders import catalog, cluster, draft_plan, gbps, node, replica
from oracles import kv_bytes_per_request, own_route_capacity, served_rps

from planner.plans.assemble import layout_of
from planner.scheduler.assess import assess

OUTPUT = 256


def nic_bound():
    """Prefill on node a (A100), decode on node b (A100), a 10 Gbit/s NIC on a, 1 ms between them."""
    c = cluster(
        node("a", "A100-80G", 2, nic=10, price=3.0),
        node("b", "A100-80G", 2, price=2.0),
        network=400,
        latency="1ms",
        output=OUTPUT,
    )
    return c, replica(c, "prefill", ["a/0"]), replica(c, "decode", ["b/0"])


def test_one_route_limited_by_a_nic() -> None:
    c, p, d = nic_bound()
    nic_rate = gbps(10) / kv_bytes_per_request(c)
    rate = min(p.capacity_rps, d.capacity_rps, nic_rate)
    assert rate == nic_rate, "the case is KV-bound"
    plan = draft_plan(c, p, d)
    s = plan.summary
    assert s.throughput_rps == pytest.approx(rate, rel=1e-6)
    assert s.bottleneck == "kv_transfer" and s.gpus_used == 2
    assert s.output_tokens_per_s == pytest.approx(rate * OUTPUT, rel=1e-6)
    assert s.ttft_s == pytest.approx(p.latency_s + kv_bytes_per_request(c) / gbps(10) + 1e-3, rel=1e-6)
    assert s.tpot_s == pytest.approx(d.latency_s, rel=1e-12)
    assert s.cost_per_hour_usd == pytest.approx(5.0)
    assert s.usd_per_million_output_tokens == pytest.approx(5.0 / (rate * OUTPUT * 3600) * 1e6, rel=1e-6)
    (route,) = plan.routes
    assert (route.source, route.target) == (p.id, d.id)
    assert route.rate_rps == pytest.approx(rate, rel=1e-6)
    assert route.capacity_rps == pytest.approx(own_route_capacity(c, p, d), rel=1e-12)
    assert route.kv_gbps == pytest.approx(rate * kv_bytes_per_request(c) * 8 / 1e9, rel=1e-6)


def test_replica_figures_are_the_cost_models() -> None:
    c, p, d = nic_bound()
    plan = draft_plan(c, p, d)
    for r in plan.replicas:
        fresh = assess(c, r.role, layout_of(r))
        assert (r.capacity_rps, r.latency_s) == (fresh.capacity_rps, fresh.latency_s)
        assert r.gpu_types == [c.gpu_by_id[s.gpus[0]].gpu.key for s in r.stages]
        assert (r.tp, r.pp) == (fresh.layout.tp, fresh.layout.pp)


def test_prefill_bound_pair_inside_a_node() -> None:
    """Two A100 decode replicas behind one L40 prefill replica on its node: the prefill replica is the limit,
    its flow is split over the two routes, and the summary's TPOT is their flow-weighted mean."""
    c = cluster(node("a", "L40", 4), output=OUTPUT)
    p = replica(c, "prefill", ["a/0"])
    d1, d2 = replica(c, "decode", ["a/1"]), replica(c, "decode", ["a/2", "a/3"])
    plan = draft_plan(c, p, d1, d2)
    assert plan.summary.throughput_rps == pytest.approx(min(p.capacity_rps, d1.capacity_rps + d2.capacity_rps))
    assert plan.summary.bottleneck == "prefill"
    rates = {r.target: r.rate_rps for r in plan.routes}
    assert sum(rates.values()) == pytest.approx(plan.summary.throughput_rps, rel=1e-6)
    tpot = (rates.get(d1.id, 0) * d1.latency_s + rates.get(d2.id, 0) * d2.latency_s) / sum(rates.values())
    assert plan.summary.tpot_s == pytest.approx(tpot, rel=1e-6)


def test_a_colocated_replica_serves_its_capacity_without_routes() -> None:
    c = cluster(node("a", "A100-80G", 1, price=2.5), output=OUTPUT)
    both = replica(c, "colocated", ["a/0"])
    prefill_alone = replica(c, "prefill", ["a/0"])
    plan = draft_plan(c, both)
    assert plan.routes == []
    assert plan.summary.throughput_rps == pytest.approx(both.capacity_rps, rel=1e-6)
    assert plan.summary.ttft_s == pytest.approx(prefill_alone.latency_s, rel=1e-6)
    assert plan.summary.tpot_s == pytest.approx(both.latency_s, rel=1e-6)
    assert plan.summary.cost_per_hour_usd == pytest.approx(2.5)


def test_a_mixed_plan_serves_what_the_oracle_says(tiny_cluster) -> None:
    c = tiny_cluster
    replicas = [
        replica(c, "prefill", ["a100-0/0"]),
        replica(c, "prefill", ["l40-0/0", "l40-0/1"]),
        replica(c, "decode", ["a100-0/1", "a100-0/2"]),
        replica(c, "decode", ["l40-0/2"]),
        replica(c, "colocated", ["a100-0/3"]),
    ]
    plan = draft_plan(c, *replicas)
    assert plan.summary.throughput_rps == pytest.approx(served_rps(c, replicas), rel=1e-6)
    by_id = {a.id: a for a in replicas}
    for route in plan.routes:
        assert route.capacity_rps == pytest.approx(own_route_capacity(c, by_id[route.source], by_id[route.target]))
    assert plan.summary.cost_per_hour_usd == pytest.approx(
        sum(catalog().gpu(c.gpu_by_id[g].gpu.key).price_per_hour for a in replicas for g in a.layout.gpus)
    )
