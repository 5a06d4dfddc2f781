"""The layouts phase (scheduler.layouts): which TP × PP layouts a group admits, how layers are split, which one is
best; group shapes (what the layout cache keys on)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from builders import cluster, hf_config, node
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.scheduler.assess import assess
from planner.scheduler.layouts import best_assessment, candidate_layouts, group_shape, node_parts, split_layers


@pytest.fixture(scope="module")
def c():
    return cluster(node("a", "A100-80G", 4), node("b", "A100-80G", 4), node("l", "L40", 2), network=100)


def shapes(layouts) -> set[tuple[int, int]]:
    return {(x.tp, x.pp) for x in layouts}


def test_node_parts_are_in_cluster_then_gpu_order(c) -> None:
    parts = node_parts(c, ["l/1", "b/2", "a/3", "b/0", "l/0"])
    assert parts == [("a", ["a/3"]), ("b", ["b/0", "b/2"]), ("l", ["l/0", "l/1"])]


def test_a_node_admits_every_tp_dividing_it_as_stages(c) -> None:
    gpus = ["a/0", "a/1", "a/2", "a/3"]
    assert shapes(candidate_layouts(c, gpus, "prefill", True)) == {(1, 4), (2, 2), (4, 1)}
    assert shapes(candidate_layouts(c, gpus, "decode", True)) == {(4, 1)}, "decode PP = 1 with a connector"
    assert shapes(candidate_layouts(c, gpus, "decode", False)) == {(1, 4), (2, 2), (4, 1)}


def test_every_layout_covers_the_layers_in_order_with_stages_on_one_node(c) -> None:
    for gpus in (["a/0", "a/1", "b/0", "b/1"], ["a/0", "l/0"], ["a/0", "a/1", "a/2", "a/3"]):
        for lay in candidate_layouts(c, gpus, "prefill", True):
            bounds = [(s.layer_start, s.layer_end) for s in lay.stages]
            assert bounds[0][0] == 0 and bounds[-1][1] == c.model.layers
            assert all(x[1] == y[0] and x[0] < x[1] for x, y in pairwise(bounds))
            assert all(len({g.split("/")[0] for g in s.gpus}) == 1 for s in lay.stages)
            assert sorted(lay.gpus) == sorted(gpus)


def test_a_group_spanning_nodes_needs_equal_gpus_per_node_to_launch(c) -> None:
    uneven = ["a/0", "a/1", "l/0"]
    assert candidate_layouts(c, uneven, "prefill", True) == []
    assert shapes(candidate_layouts(c, uneven, "prefill", False)) == {(1, 3)}
    even = ["a/0", "a/1", "b/0", "b/1"]
    assert shapes(candidate_layouts(c, even, "prefill", True)) == {(1, 4), (2, 2)}


def test_tp_sizes_must_suit_the_models_heads() -> None:
    """12 heads and 12 KV heads: TP 3 is valid (and used on a 3-GPU node), TP 8 is not."""
    c = cluster(node("a", "A100-80G", 3), node("b", "A100-80G", 8), model=hf_config(heads=12, kv_heads=12))
    assert shapes(candidate_layouts(c, ["a/0", "a/1", "a/2"], "prefill", True)) == {(1, 3), (3, 1)}
    b = [f"b/{i}" for i in range(8)]
    assert 8 not in {x.tp for x in candidate_layouts(c, b, "prefill", True)}
    assert {x.tp for x in candidate_layouts(c, b, "prefill", True)} == {2, 4}, "TP 1 would need 8 stages for 4 layers"


def test_a_faster_stage_takes_more_layers(c) -> None:
    """Prefill over an A100 stage and an L40 stage, in either order: the A100 computes faster per layer."""
    c2 = cluster(node("a", "A100-80G", 1), node("l", "L40", 1), network=100)
    layouts = candidate_layouts(c2, ["a/0", "l/0"], "prefill", True)
    assert len(layouts) == 2, "both node orders"
    for lay in layouts:
        layers = {s.gpus[0]: s.layers for s in lay.stages}
        assert layers["a/0"] > layers["l/0"], "an A100 has 312 TFLOPS to an L40's 181"


def test_best_assessment_is_the_highest_capacity_layout(c) -> None:
    gpus = ["a/0", "a/1", "a/2", "a/3"]
    for role in ("prefill", "decode"):
        options = [a for lay in candidate_layouts(c, gpus, role, True) if (a := assess(c, role, lay))]
        best = best_assessment(c, gpus, role, True)
        assert best is not None and best.capacity_rps == max(a.capacity_rps for a in options)


def test_a_ttft_slo_filters_prefill_layouts() -> None:
    """With a TTFT SLO between the fastest and the slowest layout's latency, only layouts under it remain."""
    free = cluster(node("a", "A100-80G", 4))
    gpus = ["a/0", "a/1", "a/2", "a/3"]
    options = [assess(free, "prefill", lay) for lay in candidate_layouts(free, gpus, "prefill", True)]
    latencies = sorted(a.latency_s for a in options)
    assert latencies[0] < latencies[-1]
    slo = (latencies[0] + latencies[1]) / 2
    capped = cluster(node("a", "A100-80G", 4), ttft=f"{slo * 1000:.3f}ms")
    best = best_assessment(capped, gpus, "prefill", True)
    assert best is not None and best.latency_s <= slo and best.latency_s == latencies[0]
    tight = cluster(node("a", "A100-80G", 4), ttft=f"{latencies[0] * 500:.3f}ms")
    assert best_assessment(tight, gpus, "prefill", True) is None


def test_a_group_too_small_for_the_model_has_no_layout() -> None:
    c = cluster(node("a", "A100-80G", 4), model="llama-3.1-70b")
    assert best_assessment(c, ["a/0"], "prefill", True) is None
    assert best_assessment(c, ["a/0", "a/1", "a/2", "a/3"], "decode", True) is not None


def test_group_shape_names_what_the_cost_model_reads_without_names() -> None:
    c = cluster(
        node("a", "A100-80G", 2), node("b", "A100-80G", 2), node("n", "A100-80G", 2, nic=100),
        node("l", "L40", 2), network=100,
    )  # fmt: skip
    shape = group_shape(c, node_parts(c, ["a/0", "a/1"]))
    assert shape == group_shape(c, node_parts(c, ["b/0", "b/1"]))
    assert shape != group_shape(c, node_parts(c, ["n/0", "n/1"])), "another NIC"
    assert shape != group_shape(c, node_parts(c, ["l/0", "l/1"])), "another GPU"
    assert shape != group_shape(c, node_parts(c, ["a/0"])), "another size"
    assert group_shape(c, node_parts(c, ["a/0", "l/0"])) != group_shape(c, node_parts(c, ["a/0", "b/0"]))


def test_split_layers_fills_caps_that_add_up_to_the_model_exactly() -> None:
    assert split_layers(4, [1.0, 1.0], [2, 2]) == [2, 2]
    assert split_layers(5, [1.0, 1.0], [2, 2]) is None
    assert split_layers(3, [1.0, 1.0], [0, 3]) is None, "a stage must hold at least one layer"
    assert split_layers(1, [1.0], [1]) == [1]


def compositions(layers: int, stages: int):
    """Every way to give each of `stages` stages ≥ 1 layer, `layers` in all."""
    if stages == 1:
        yield (layers,)
        return
    for first in range(1, layers - stages + 2):
        for rest in compositions(layers - first, stages - 1):
            yield (first, *rest)


@settings(max_examples=200, deadline=None)
@given(
    layers=st.integers(1, 12),
    stages=st.lists(
        st.tuples(st.sampled_from([0.5, 0.7, 1.0, 1.5, 2.0, 3.0]), st.integers(0, 12)), min_size=1, max_size=4
    ),
)
def test_split_layers_is_the_min_max_split_found_by_brute_force(layers, stages) -> None:
    costs, caps = [c for c, _ in stages], [cap for _, cap in stages]
    feasible = [s for s in compositions(layers, len(stages)) if all(n <= cap for n, cap in zip(s, caps, strict=True))]
    found = split_layers(layers, costs, caps)
    if not feasible:
        assert found is None
        return
    assert found is not None and sum(found) == layers and all(1 <= n <= cap for n, cap in zip(found, caps, strict=True))
    best = min(max(c * n for c, n in zip(costs, s, strict=True)) for s in feasible)
    assert max(c * n for c, n in zip(costs, found, strict=True)) == pytest.approx(best)


def test_a_sixteen_gpu_node_admits_tp_8_in_two_stages() -> None:
    """TP sizes tried: the node's own size and 1, 2, 4, 8, 16: with 16 GPUs, TP 8 × PP 2 is one of them."""
    c = cluster(node("big", "A100-80G", 16))
    gpus = [f"big/{i}" for i in range(16)]
    shapes = {(x.tp, x.pp) for x in candidate_layouts(c, gpus, "prefill", True)}
    assert (8, 2) in shapes and (16, 1) in shapes and (4, 4) in shapes
