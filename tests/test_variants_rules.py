"""scheduler.variants: variants of running engines' layout keys, which variants fit a group, and the layout
moves' neighbourhood counted by hand (shift sizes, swaps of multi-stage nodes, other TP sizes, what is left
out when nothing fits, and never the layout itself)."""

from __future__ import annotations

import pytest
from builders import cluster, node

from planner.costs.layout import Layout, Stage
from planner.scheduler.layouts import balanced_split, build_layout
from planner.scheduler.variants import layout_moves, layout_of_variant, variant_of, variant_of_key


@pytest.fixture(scope="module")
def two_nodes():
    """llama-3.1-8b (32 layers); a: 2 × A100-80G, b: 2 × L40."""
    return cluster(node("a", "A100-80G", 2), node("b", "L40", 2), network=100)


def key_of(layout: Layout) -> list:
    return [(stage.gpus, (stage.layer_start, stage.layer_end)) for stage in layout.stages]


def test_a_running_engines_key_gives_its_variant(two_nodes) -> None:
    layout = Layout((Stage(("b/0",), 0, 10), Stage(("a/0",), 10, 20), Stage(("a/1",), 20, 32)))
    assert variant_of_key(two_nodes, key_of(layout)) == (1, ("b", "a"), (10, 10, 12))
    reordered = [(("a/1", "a/0"), (0, 32))]  # a TP group's GPUs in any order: the index order is taken
    assert variant_of_key(two_nodes, reordered) == (2, ("a",), (32,))


def test_a_key_variants_cannot_express_has_no_variant(two_nodes) -> None:
    """Stage GPUs that are not the node's GPUs chunked in index order (a/1 before a/0 as stages), an unknown
    GPU (a node the cluster no longer has: None, not a KeyError), or no stage at all."""
    swapped = [(("a/1",), (0, 16)), (("a/0",), (16, 32))]
    assert variant_of_key(two_nodes, swapped) is None
    assert variant_of_key(two_nodes, [(("z/0",), (0, 32))]) is None
    assert variant_of_key(two_nodes, [(("a/0",), (0, 16)), (("z/0",), (16, 32))]) is None
    assert variant_of_key(two_nodes, []) is None


def test_a_variant_fits_only_its_nodes_and_a_tp_dividing_each_share(two_nodes) -> None:
    group = ["a/0", "a/1", "b/0"]
    assert layout_of_variant(two_nodes, group, (1, ("a", "b"), (10, 10, 12))) is not None
    assert layout_of_variant(two_nodes, group, (2, ("a", "b"), (16, 16))) is None  # b's one GPU: no TP 2
    assert layout_of_variant(two_nodes, ["a/0", "a/1"], (1, ("a", "b"), (10, 10, 12))) is None  # b not in it
    assert layout_of_variant(two_nodes, group, (1, ("a",), (10, 10, 12))) is None  # b missing from the order
    assert layout_of_variant(two_nodes, group, (1, ("a", "b"), (0, 20, 12))) is None  # a stage without layers
    assert layout_of_variant(two_nodes, group, (1, ("a", "b"), (10, 10, 10))) is None  # 30 of 32 layers


def test_shifts_move_one_two_four_up_to_32_layers() -> None:
    """80 layers, 79 + 1: the shifts from stage 0 are 1, 2, 4, …, 32 (never 64, though it would fit)."""
    c = cluster(node("a", "A100-80G", 2), model="llama-2-70b")
    layout = build_layout([("a/0",), ("a/1",)], [79, 1])
    moves = layout_moves(c, ["a/0", "a/1"], "prefill", layout, False)
    shifts = {m[2] for m in moves if m[:2] == (1, ("a",))}
    assert {(79 - k, 1 + k) for k in (1, 2, 4, 8, 16, 32)} <= shifts
    assert (15, 65) not in shifts


def test_a_swap_carries_each_nodes_stages_with_their_layers(two_nodes) -> None:
    """a holds two stages (10, 15), b one (7): swapped, b's 7 come first and a's pair follows unchanged."""
    layout = build_layout([("a/0",), ("a/1",), ("b/0",)], [10, 15, 7])
    moves = layout_moves(two_nodes, ["a/0", "a/1", "b/0"], "prefill", layout, False)
    assert (1, ("b", "a"), (7, 10, 15)) in moves
    assert (1, ("b", "a"), (10, 10, 15)) not in moves


def test_another_tp_size_is_offered_with_its_balanced_split(two_nodes) -> None:
    layout = build_layout([("a/0",), ("a/1",)], [16, 16])
    moves = layout_moves(two_nodes, ["a/0", "a/1"], "prefill", layout, True)
    assert (2, ("a",), (32,)) in moves


def test_one_node_gets_no_kv_local_split() -> None:
    """A single node: every stage is local, so there is no KV-local split to offer. Three A100s, 32 layers: the
    balanced split (11, 11, 10; the last stage runs the LM head) is offered, the even proxy split that
    favouring the node would give (10, 11, 11) is not; TP 3 does not divide the heads."""
    c = cluster(node("a", "A100-80G", 3))
    stages = [("a/0",), ("a/1",), ("a/2",)]
    moves = layout_moves(c, ["a/0", "a/1", "a/2"], "prefill", build_layout(stages, [20, 6, 6]), True)
    shifts = {(20 - k, 6 + k, 6) for k in (1, 2, 4, 8, 16)} | {(20 + k, 6 - k, 6) for k in (1, 2, 4)}
    shifts |= {(20, 6 - k, 6 + k) for k in (1, 2, 4)} | {(20, 6 + k, 6 - k) for k in (1, 2, 4)}
    assert tuple(balanced_split(c, stages, "prefill")) == (11, 11, 10)
    assert moves == {(1, ("a",), split) for split in shifts | {(11, 11, 10)}}


def test_the_layout_itself_is_never_a_move(two_nodes) -> None:
    """The current layout is the balanced split of its own order and TP: that candidate is dropped."""
    stages = [("a/0",), ("b/0",)]
    split = balanced_split(two_nodes, stages, "prefill")
    layout = build_layout(stages, split)
    moves = layout_moves(two_nodes, ["a/0", "b/0"], "prefill", layout, True)
    assert variant_of(two_nodes, layout) not in moves
    assert moves  # shifts and the swap remain


def test_a_group_too_small_for_the_model_gets_only_shifts_and_swaps() -> None:
    """Two L4s cannot hold a 70B model: no balanced or KV-local split exists, so none is offered."""
    c = cluster(node("a", "L4", 1), node("b", "L4", 1), model="llama-2-70b")
    layout = build_layout([("a/0",), ("b/0",)], [40, 40])
    assert balanced_split(c, [("a/0",), ("b/0",)], "prefill") is None
    moves = layout_moves(c, ["a/0", "b/0"], "prefill", layout, False)
    assert moves == {
        *((1, ("a", "b"), (40 - k, 40 + k)) for k in (1, 2, 4, 8, 16, 32)),
        *((1, ("a", "b"), (40 + k, 40 - k)) for k in (1, 2, 4, 8, 16, 32)),
        (1, ("b", "a"), (40, 40)),
    }


def test_shifts_cross_only_between_neighbouring_stages(two_nodes) -> None:
    """Three stages (10, 10, 12): layers move across the 0|1 and 1|2 boundaries, never from stage 0 to stage 2."""
    layout = build_layout([("a/0",), ("a/1",), ("b/0",)], [10, 10, 12])
    moves = layout_moves(two_nodes, ["a/0", "a/1", "b/0"], "prefill", layout, False)
    same = {m[2] for m in moves if m[:2] == (1, ("a", "b"))}
    assert {(9, 11, 12), (11, 9, 12), (10, 9, 13), (10, 11, 11), (2, 18, 12), (10, 2, 20)} <= same
    assert not {(9, 10, 13), (11, 10, 11), (8, 10, 14), (12, 10, 10)} & same


def test_a_shift_may_leave_a_stage_one_layer_and_a_one_layer_stage_fits(two_nodes) -> None:
    layout = build_layout([("a/0",), ("b/0",)], [9, 23])
    moves = layout_moves(two_nodes, ["a/0", "b/0"], "prefill", layout, False)
    assert (1, ("a", "b"), (1, 31)) in moves  # 8 layers off stage 0 leave it one
    assert layout_of_variant(two_nodes, ["a/0", "b/0"], (1, ("a", "b"), (1, 31))) is not None


def test_a_swap_is_also_offered_with_the_swapped_orders_balanced_split(two_nodes) -> None:
    layout = build_layout([("a/0",), ("b/0",)], [10, 22])
    moves = layout_moves(two_nodes, ["a/0", "b/0"], "prefill", layout, False)
    balanced = tuple(balanced_split(two_nodes, [("b/0",), ("a/0",)], "prefill"))
    assert balanced != (22, 10)
    assert (1, ("b", "a"), balanced) in moves and (1, ("b", "a"), (22, 10)) in moves


def test_a_shift_of_32_may_leave_exactly_one_layer() -> None:
    """80 layers as 33 + 47 on one node (no KV-local split there, and memory rules out 1 + 79 as a balanced
    split): moving 32 layers off stage 0 leaves it one, and is offered."""
    c = cluster(node("a", "A100-80G", 2), model="llama-2-70b")
    moves = layout_moves(c, ["a/0", "a/1"], "prefill", build_layout([("a/0",), ("a/1",)], [33, 47]), False)
    assert (1, ("a",), (1, 79)) in moves and (1, ("a",), (65, 15)) in moves
