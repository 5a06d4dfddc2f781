"""scheduler.layouts' split rules on small analytic cases: the per-layer stage cost (prefill compute-bound, decode
memory-bound, TP dividing it), the decode split found by brute force over that proxy, the KV-local split that
favours one node, the pipeline orders tried, the layout chosen under an SLO, the surplus trimmed from the slowest
stage, and the memory cap read for the stage's own GPU type."""

from __future__ import annotations

import pytest
from builders import cluster, hf_config, layout, node, toy_gpu

from planner.costs.layout import Stage
from planner.costs.memory import stage_kv_tokens
from planner.costs.replica import kv_need
from planner.scheduler.assess import assess
from planner.scheduler.layouts import (
    _stage_cost,
    _stage_layer_cap,
    balanced_split,
    best_assessment,
    candidate_layouts,
    node_orders,
    split_layers,
)


@pytest.fixture(scope="module")
def a100_l40():
    return cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100)


def test_prefill_costs_by_compute_and_decode_by_memory_bandwidth_split_over_tp(a100_l40) -> None:
    """Catalogue figures: A100 312 TFLOPS × 0.6, 2039 GB/s × 0.82; L40 181.05 TFLOPS × 0.55, 864 GB/s × 0.8."""
    c = a100_l40
    # costs are ~1e-15 s: compared as ratios (pytest.approx's absolute tolerance would swallow them)
    assert _stage_cost(c, ("a/0",), "prefill") * 312e12 * 0.6 == pytest.approx(1.0)
    assert _stage_cost(c, ("l/0",), "decode") * 864e9 * 0.8 == pytest.approx(1.0)
    for role in ("prefill", "decode"):
        assert _stage_cost(c, ("a/0", "a/1"), role) / _stage_cost(c, ("a/0",), role) == pytest.approx(0.5)


def test_a_decode_pipeline_splits_layers_by_memory_bandwidth(a100_l40) -> None:
    """Brute force over x layers on the A100 and 32 − x on the L40, time per layer ∝ 1 / (bandwidth × efficiency):
    x = 23 (23 / 1672 vs 9 / 691 GB/s); a compute proxy would give 21."""
    best = min(range(1, 32), key=lambda x: max(x / (2039 * 0.82), (32 - x) / (864 * 0.8)))
    assert best == 23
    assert balanced_split(a100_l40, [("a/0",), ("l/0",)], "decode") == [best, 32 - best]


@pytest.mark.parametrize("role", ["prefill", "decode"])
def test_the_kv_local_split_fills_the_favoured_node(a100_l40, role) -> None:
    """Llama-3.1-8B fits on either GPU: the favoured node's stage takes every layer but the one the other keeps."""
    stages = [("a/0",), ("l/0",)]
    assert balanced_split(a100_l40, stages, role, favour="a") == [31, 1]
    assert balanced_split(a100_l40, stages, role, favour="l") == [1, 31]


def test_the_surplus_comes_off_the_first_slowest_stage() -> None:
    """Costs 1, 2, 3 per layer, caps 1, 3, 8, 5 layers: the best bottleneck is 6, where the stages could hold 1, 3 and
    2 layers (times 1, 6, 6): one layer too many, taken from the first of the two slowest stages."""
    assert split_layers(5, [1, 2, 3], [1, 3, 8]) == [1, 2, 2]


def test_a_stages_memory_cap_is_read_for_its_own_gpu_type() -> None:
    """A 10 GB GPU listed first cannot hold Llama-3.1-8B (16 GB); the 80 GB A100 after it holds all 32 layers."""
    c = cluster(node("s", toy_gpu(memory="10GB"), 1), node("b", "A100-80G", 1), network=100)
    found = best_assessment(c, ["b/0"], "decode", True)
    assert found is not None and found.layout.stages[0].layers == 32
    assert best_assessment(c, ["s/0"], "decode", True) is None


def test_groups_on_up_to_four_nodes_try_every_pipeline_order() -> None:
    parts = [(name, [f"{name}/0"]) for name in "abcde"]
    assert len(node_orders(parts[:4])) == 24, "4! orders"
    assert node_orders(parts) == [parts, parts[::-1]], "five nodes: cluster order and its reverse"


def test_under_an_slo_the_layout_with_the_most_goodput_wins() -> None:
    """Two A100s under TTFT 300 ms: both prefill layouts (TP 1 × PP 2, TP 2) serve within it; the one with the most
    goodput is chosen, by brute force over the candidates."""
    c = cluster(node("a", "A100-80G", 2), tpot="40ms", ttft="300ms")
    options = [a for lay in candidate_layouts(c, ["a/0", "a/1"], "prefill", True) if (a := assess(c, "prefill", lay))]
    assert len(options) == 2 and all(a.goodput_rps > 0 for a in options)
    assert best_assessment(c, ["a/0", "a/1"], "prefill", True) == max(options, key=lambda a: a.goodput_rps)


def test_a_replica_serving_half_a_request_per_second_within_the_slo_counts() -> None:
    """Toy GPUs with 1 GB/s of memory bandwidth and a 10 s TPOT: the decode replica's goodput is about 0.5 rps."""
    c = cluster(node("a", toy_gpu(bandwidth="1GB/s"), 2), model=hf_config(), tpot="10s")
    found = best_assessment(c, ["a/0", "a/1"], "decode", True)
    assert found is not None and 0 < found.goodput_rps < 1


def test_the_last_stage_holds_fewer_layers_beside_the_lm_head() -> None:
    """Two 3 GB toy GPUs, the second 10× faster: decode wants ~15 of 16 layers there, but as the last stage it also
    holds the 128k-token LM head; the cost model fits 12 layers there and not 13, so the split is 4 + 12."""
    toy = hf_config(layers=16, hidden=2048, heads=16, kv_heads=16, ffn=8192, vocab=128000)
    slow, fast = toy_gpu(memory="3GB", bandwidth="10GB/s"), toy_gpu(memory="3GB", bandwidth="100GB/s")
    c = cluster(node("a", slow, 1), node("b", fast, 1), model=toy)
    assert assess(c, "decode", layout(16, ["a/0"], ["b/0"], split=[4])) is not None
    assert assess(c, "decode", layout(16, ["a/0"], ["b/0"], split=[3])) is None
    assert balanced_split(c, [("a/0",), ("b/0",)], "decode") == [4, 12]


@pytest.mark.parametrize("memory", ["2GB", "3GB", "5GB"])
def test_a_stages_layer_cap_is_the_largest_count_that_fits(memory) -> None:
    """The binary search against a linear scan of the same memory rule (costs.memory.stage_kv_tokens ≥ the role's
    KV need), for every role and first/last position, on toy GPUs where the caps fall inside the model."""
    toy = hf_config(layers=16, hidden=2048, heads=16, kv_heads=16, ffn=8192, vocab=128000)
    c = cluster(node("a", toy_gpu(memory=memory), 1), model=toy)
    for role in ("prefill", "decode"):
        batched, need = kv_need(c, role)
        for first, last in ((True, False), (False, True), (False, False), (True, True)):
            fitting = [k for k in range(17) if stage_kv_tokens(c, Stage(("a/0",), 0, k), first, last, batched) >= need]
            assert _stage_layer_cap(c, ("a/0",), role, first, last) == max(fitting)
