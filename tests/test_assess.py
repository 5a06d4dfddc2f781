"""scheduler.assess: a replica's capacity and latency in each role; the colocated time-sharing formula (analytic,
from the same layout's prefill and decode figures); route capacities between replicas."""

from __future__ import annotations

import pytest
from builders import cluster, layout, node, replica

from planner.scheduler.assess import assess, max_model_len, route_capacity


@pytest.mark.parametrize("gpu", ["A100-80G", "L40", "H100-SXM"])
def test_colocated_capacity_lies_between_time_sharing_and_either_role_alone(gpu) -> None:
    """Chunked prefill (costs.chunked, issue 12): a fused step pays the fixed costs once, so a colocated replica
    serves at least what alternating prefill and decode would, 1/(1/P + 1/D), and at most what either role alone
    does; its decode steps carry prefill chunks, so its TPOT is longer than the decode replica's, at no larger a
    batch."""
    c = cluster(node("n", gpu, 1))
    p, d, both = (replica(c, role, ["n/0"]) for role in ("prefill", "decode", "colocated"))
    sharing = 1 / (1 / p.capacity_rps + 1 / d.capacity_rps)
    assert sharing <= both.capacity_rps < min(p.capacity_rps, d.capacity_rps)
    assert both.latency_s > d.latency_s
    assert both.engine.max_num_seqs <= d.engine.max_num_seqs


def test_a_tpot_slo_caps_colocated_capacity_where_stalls_would_break_it() -> None:
    """TPOT 40 ms on an A100, whose chunk-stretched steps take ~130 ms unconstrained: the token budget shrinks until
    the longest step meets the SLO, which costs capacity."""
    free = replica(cluster(node("n", "A100-80G", 1)), "colocated", ["n/0"])
    both = replica(cluster(node("n", "A100-80G", 1), tpot="40ms"), "colocated", ["n/0"])
    assert free.latency_s > 0.040 >= both.latency_s, "the case is SLO-bound"
    assert 0 < both.capacity_rps < free.capacity_rps
    assert both.engine.max_num_batched_tokens < free.engine.max_num_batched_tokens
    assert 0 < both.goodput_rps <= both.capacity_rps


def test_a_loose_tpot_slo_leaves_the_unconstrained_capacity() -> None:
    free = replica(cluster(node("n", "A100-80G", 1)), "colocated", ["n/0"])
    both = replica(cluster(node("n", "A100-80G", 1), tpot="1s"), "colocated", ["n/0"])
    assert both.capacity_rps == pytest.approx(free.capacity_rps, rel=1e-12) and both.latency_s <= 1.0


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


def test_goodput_exists_only_with_an_slo_and_never_exceeds_capacity() -> None:
    """No SLO: nothing to be within (None). A loose one (TTFT 5 s, TPOT 200 ms): every role serves some but not more
    than its saturated capacity under Poisson load."""
    free = cluster(node("n", "A100-80G", 1))
    loose = cluster(node("n", "A100-80G", 1), ttft="5s", tpot="200ms")
    for role in ("prefill", "decode", "colocated"):
        assert replica(free, role, ["n/0"]).goodput_rps is None
        a = replica(loose, role, ["n/0"])
        assert 0 < a.goodput_rps <= a.capacity_rps, role


def test_an_unreachable_tpot_leaves_decoding_replicas_running_with_zero_goodput() -> None:
    """A 1 ms TPOT no batch meets: decode and colocated replicas are still assessed (they run; the search just does
    not deploy them) at their unconstrained capacity, serving nothing within the SLO. Prefill has no TPOT."""
    free = cluster(node("n", "A100-80G", 1))
    tight = cluster(node("n", "A100-80G", 1), tpot="1ms")
    for role in ("decode", "colocated"):
        a, unconstrained = replica(tight, role, ["n/0"]), replica(free, role, ["n/0"])
        assert a.goodput_rps == 0.0, role
        assert a.capacity_rps == pytest.approx(unconstrained.capacity_rps, rel=1e-12), role
        assert a.latency_s == pytest.approx(unconstrained.latency_s, rel=1e-12) and a.latency_s > 0.001, role
    assert replica(tight, "prefill", ["n/0"]).goodput_rps > 0


@pytest.mark.parametrize("stages", [[["a/0"]], [["a/0"], ["a/1"]]])
def test_a_prefill_engine_admits_a_full_micro_batch_per_pipeline_stage(stages) -> None:
    """A prefill micro-batch is max_num_batched_tokens of 1024-token prompts; a pipeline of PP stages keeps PP of them
    in flight, and vLLM caps all running sequences at max_num_seqs, so it must admit PP × that many (as an int)."""
    c = cluster(node("a", "A100-80G", 2), prompt=1024)
    engine = replica(c, "prefill", *stages).engine
    assert isinstance(engine.max_num_seqs, int)
    assert engine.max_num_seqs == len(stages) * (engine.max_num_batched_tokens // 1024) > 0
