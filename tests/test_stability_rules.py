"""scheduler.stability with layouts: an engine restarts when its start-up layout changes (stage GPU sets, layer
ranges, their order) even on the same GPUs in the same role; a layout not known on either side compares equal.
tests/test_search_units.py checks GPU sets and roles alone; expectations here are written out by hand."""

from __future__ import annotations

from builders import layout

from planner.scheduler.stability import anchor_of, key_of, layout_key, moved_gpus, unchanged

EVEN = key_of(layout(8, ["a/0"], ["a/1"]))  # layers [0, 4) on a/0, [4, 8) on a/1
SKEWED = key_of(layout(8, ["a/0"], ["a/1"], split=[6]))  # [0, 6), [6, 8)
SWAPPED = key_of(layout(8, ["a/1"], ["a/0"]))  # the same split, the stages' GPUs swapped


def test_a_layout_key_is_each_stages_gpu_set_and_layer_range_in_order() -> None:
    even = ((frozenset({"a/0"}), (0, 4)), (frozenset({"a/1"}), (4, 8)))
    assert key_of(layout(8, ["a/0"], ["a/1"])) == even
    assert layout_key([(["b/1", "b/0"], 0, 8)]) == ((frozenset({"b/0", "b/1"}), (0, 8)),), "TP order does not matter"
    assert len({EVEN, SKEWED, SWAPPED}) == 3


def test_a_new_layout_on_the_same_gpus_and_role_moves_them() -> None:
    anchor = anchor_of([(("a/0", "a/1"), "prefill", EVEN), (("b/0",), "decode")])
    assert moved_gpus(anchor, [(("a/0", "a/1"), "prefill", EVEN), (("b/0",), "decode")]) == []
    assert moved_gpus(anchor, [(("a/1", "a/0"), "prefill", SKEWED), (("b/0",), "decode")]) == ["a/0", "a/1"]
    assert moved_gpus(anchor, [(("a/0", "a/1"), "prefill", SWAPPED), (("b/0",), "decode")]) == ["a/0", "a/1"]
    # a layout not known (None, or left out) on either side: the GPU set and role decide
    assert moved_gpus(anchor, [(("a/0", "a/1"), "prefill", None), (("b/0",), "decode", SKEWED)]) == []
    assert moved_gpus(anchor, [(("a/0", "a/1"), "prefill"), (("b/0",), "prefill", None)]) == ["b/0"]


def test_unchanged_compares_the_layout_when_both_are_known() -> None:
    anchor = anchor_of([(("a/0", "a/1"), "prefill", EVEN)])
    assert unchanged(anchor, ("a/0", "a/1"), "prefill", EVEN)
    assert unchanged(anchor, ("a/0", "a/1"), "prefill")
    assert not unchanged(anchor, ("a/0", "a/1"), "prefill", SKEWED)
    assert not unchanged(anchor, ("a/0", "a/1"), "decode", EVEN)
    blind = anchor_of([(("a/0", "a/1"), "prefill", None)])
    assert unchanged(blind, ("a/0", "a/1"), "prefill", SKEWED)
