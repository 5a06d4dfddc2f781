"""scheduler.assess: a replica's capacity and latency in each role; the colocated time-sharing formula (analytic,
from the same layout's prefill and decode figures); route capacities between replicas."""

from __future__ import annotations

import pytest
from builders import cluster, layout, node, replica

from planner.scheduler.assess import assess, max_model_len, route_capacity


@pytest.mark.parametrize("gpu", ["A100-80G", "L40", "H100-SXM"])
def test_colocated_capacity_time_shares_prefill_and_decode(gpu) -> None:
    """Each request costs 1/P of the replica's time in prefill and 1/D in decode: capacity 1/(1/P + 1/D); decode steps
    wait behind prefills c/P of the time: TPOT = step / (1 − c/P)."""
    c = cluster(node("n", gpu, 1))
    p, d, both = (replica(c, role, ["n/0"]) for role in ("prefill", "decode", "colocated"))
    capacity = 1 / (1 / p.capacity_rps + 1 / d.capacity_rps)
    assert both.capacity_rps == pytest.approx(capacity, rel=1e-12)
    assert both.latency_s == pytest.approx(d.latency_s / (1 - capacity / p.capacity_rps), rel=1e-12)
    assert both.capacity_rps < min(p.capacity_rps, d.capacity_rps)
    assert both.engine == d.engine, "a colocated engine is sized as the decode one"


def test_a_tpot_slo_caps_colocated_capacity_where_stalls_would_break_it() -> None:
    """TPOT 40 ms, a decode step of ~39.9 ms: prefills may take only 1 − step/SLO of the time, c ≤ P (1 − step/SLO),
    far below the time-sharing capacity; the TPOT the replica then reaches is the SLO itself."""
    slo = 0.040
    c = cluster(node("n", "A100-80G", 1), tpot="40ms")
    p, d, both = (replica(c, role, ["n/0"]) for role in ("prefill", "decode", "colocated"))
    sharing = 1 / (1 / p.capacity_rps + 1 / d.capacity_rps)
    stalls = p.capacity_rps * (1 - d.latency_s / slo)
    assert stalls < sharing, "the case is SLO-bound"
    assert both.capacity_rps == pytest.approx(stalls, rel=1e-9)
    assert both.latency_s == pytest.approx(slo, rel=1e-9)


def test_a_loose_tpot_slo_leaves_the_time_sharing_capacity() -> None:
    c = cluster(node("n", "A100-80G", 1), tpot="1s")
    p, d, both = (replica(c, role, ["n/0"]) for role in ("prefill", "decode", "colocated"))
    assert both.capacity_rps == pytest.approx(1 / (1 / p.capacity_rps + 1 / d.capacity_rps), rel=1e-12)


def test_roles_that_do_not_fit_are_none() -> None:
    """Llama-3.1-70B (~141 GB of weights) on one 80 GB GPU fits no role."""
    c = cluster(node("n", "A100-80G", 2), model="llama-3.1-70b")
    for role in ("prefill", "decode", "colocated"):
        assert assess(c, role, layout(c.model.layers, ["n/0"])) is None


def test_prefill_and_decode_report_their_own_figures() -> None:
    c = cluster(node("n", "A100-80G", 2))
    p, d = replica(c, "prefill", ["n/0"]), replica(c, "decode", ["n/1"])
    assert p.role == "prefill" and d.role == "decode"
    assert 0 < p.latency_s < 2 and 0 < d.latency_s < 0.2  # a TTFT of seconds at most, a TPOT of milliseconds
    assert p.engine.max_model_len == d.engine.max_model_len == max_model_len(c)
    assert p.engine.gpu_memory_utilization == pytest.approx(c.memory_utilization)


@pytest.mark.parametrize(("prompt", "output", "expected"), [(1024, 256, 2048), (100, 28, 128), (4000, 96, 4096)])
def test_max_model_len_is_the_power_of_two_holding_a_long_request(prompt, output, expected) -> None:
    assert max_model_len(cluster(node("n"), prompt=prompt, output=output)) == expected


def test_max_model_len_is_capped_by_the_model() -> None:
    c = cluster(node("n"), model="opt-13b", prompt=3000, output=100)  # OPT: 2048 positions
    assert max_model_len(c) == c.model.max_position_embeddings == 2048


def test_route_capacity_is_zero_between_tp_sizes_a_connector_cannot_join() -> None:
    from builders import hf_config

    c = cluster(node("a", "A100-80G", 3), node("b", "A100-80G", 2), model=hf_config(heads=12, kv_heads=12))
    p, d = replica(c, "prefill", ["a/0", "a/1", "a/2"]), replica(c, "decode", ["b/0", "b/1"])
    assert route_capacity(c, p, d, True) == 0.0
    assert route_capacity(c, p, d, False) > 0.0
