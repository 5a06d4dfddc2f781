"""scheduler.partition, the rules test_partition.py leaves loose: which neighbouring groups Kernighan–Lin pairs,
that it weighs real bandwidth (a bigger crossed grouping than chance would sort), and the exact K values
tried around total memory ÷ replica memory. Expectations come from the node layout drawn in each docstring.
"""

from __future__ import annotations

import itertools

import numpy as np
from builders import cluster, node

from planner.scheduler.partition import (
    _best_split,
    candidate_k,
    fiedler_order,
    flatten,
    kernighan_lin_refine,
    make_blocks,
    spectral_groups,
)


def by_gpus(groups) -> list[list[str]]:
    return sorted(sorted(flatten(g)) for g in groups)


def test_each_group_pairs_with_its_best_connected_neighbour() -> None:
    """a and b are NVLink nodes, c another; groups {a/0, b/0}, {a/1, b/1} are crossed and {c/0, c/1} alone.
    With one neighbour each, the crossed pair (most bandwidth between them) is the pair refined, and it
    regroups by node; pairing with the far group c gains nothing."""
    c = cluster(node("a", "A100-80G", 2), node("b", "A100-80G", 2), node("c", "A100-80G", 2), network=10)
    groups = [[("a/0",), ("b/0",)], [("a/1",), ("b/1",)], [("c/0",), ("c/1",)]]
    refined = kernighan_lin_refine(c, groups, lambda gpus: True, seed=0, neighbours=1)
    assert by_gpus(refined) == [["a/0", "a/1"], ["b/0", "b/1"], ["c/0", "c/1"]]


def test_a_large_crossed_grouping_is_sorted_by_node() -> None:
    """Two 4-GPU nodes on a slow link, each group holding half of each: only the bandwidth-weighted swaps find
    the by-node grouping (one of 35 balanced ways to split eight blocks)."""
    c = cluster(node("a", "A100-80G", 4), node("b", "A100-80G", 4), network=10)
    halves = [[("a/0",), ("a/1",), ("b/0",), ("b/1",)], [("a/2",), ("a/3",), ("b/2",), ("b/3",)]]
    interleaved = [[("a/0",), ("b/1",), ("a/2",), ("b/3",)], [("b/0",), ("a/1",), ("b/2",), ("a/3",)]]
    for seed, groups in itertools.product(range(3), (halves, interleaved)):
        refined = kernighan_lin_refine(c, groups, lambda gpus: True, seed=seed)
        assert by_gpus(refined) == [[f"a/{i}" for i in range(4)], [f"b/{i}" for i in range(4)]]


def test_groups_with_no_bandwidth_between_them_are_not_paired() -> None:
    """One group only: nothing to pair; two groups already by node: KL keeps them."""
    c = cluster(node("a", "A100-80G", 2), node("b", "A100-80G", 2), network=10)
    one = [[("a/0",), ("a/1",), ("b/0",), ("b/1",)]]
    assert kernighan_lin_refine(c, one, lambda gpus: True, seed=0) == one
    two = [[("a/0",), ("a/1",)], [("b/0",), ("b/1",)]]
    assert kernighan_lin_refine(c, two, lambda gpus: True, seed=0) == two


def usable_bytes(c) -> float:
    return sum(slot.gpu.memory for slot in c.gpus) * c.memory_utilization


def test_candidate_k_when_memory_holds_one_and_a_half_replicas() -> None:
    """k0 = 1: the Ks are 1, 2 (k0 + 1 and the ¾ floor of 2) and the block count, never 0 nor 3."""
    c = cluster(node("a", "A100-80G", 8))
    replica = usable_bytes(c) / 1.5
    assert candidate_k(c, replica, 8) == [1, 2, 8]


def test_candidate_k_when_no_replica_fits_whole_memory() -> None:
    """k0 is at least 1 even when one replica needs more than all the memory."""
    c = cluster(node("a", "A100-80G", 8))
    assert candidate_k(c, usable_bytes(c) * 3, 8) == [1, 2, 8]


def test_candidate_k_around_eight_replicas() -> None:
    """Memory for 8.5 replicas: k0 = 8, so 7, 8, 9, ¾ · 8 = 6 and the 16 blocks."""
    c = cluster(node("a", "A100-80G", 8), node("b", "A100-80G", 8))
    assert candidate_k(c, usable_bytes(c) / 8.5, 16) == [6, 7, 8, 9, 16]
    assert candidate_k(c, usable_bytes(c) / 8.5, 8) == [6, 7, 8]


def test_a_block_of_a_node_that_halves_unevenly_stops_at_the_last_even_size() -> None:
    """12 GPUs need 8 a replica: 1 → 2 → 4 divide 12, 8 does not, so blocks of 4."""
    c = cluster(node("a", "A100-80G", 12))
    per_gpu = c.gpus[0].gpu.memory * c.memory_utilization
    assert {len(b) for b in make_blocks(c, 7.5 * per_gpu)} == {4}
    assert {len(b) for b in make_blocks(c, 4.0 * per_gpu)} == {4}
    assert {len(b) for b in make_blocks(c, 4.01 * per_gpu)} == {4}
    assert {len(b) for b in make_blocks(c, 2.0 * per_gpu)} == {2}


def chain(*links: float) -> np.ndarray:
    """Blocks 0 – 1 – 2 – … with these bandwidths between neighbours (symmetric, zero elsewhere)."""
    n = len(links) + 1
    weights = np.zeros((n, n))
    for i, w in enumerate(links):
        weights[i, i + 1] = weights[i + 1, i] = w
    return weights


def test_the_cheapest_cut_at_the_edge_of_the_memory_tolerance_is_taken() -> None:
    """Four equal blocks, share ½ ± ¼: cuts after 1, 2 or 3 blocks are all allowed (3 exactly at the edge);
    crossing bandwidths 5, 9, 1, so the cut after block 3 wins."""
    assert _best_split(chain(5, 9, 1), np.ones(4), 0.5, 0.25) == 3


def test_a_cut_outside_the_tolerance_is_not_taken_however_cheap() -> None:
    """Tolerance ⅛: only the middle cut (after 2 blocks) is allowed, though the cut after 3 costs less."""
    assert _best_split(chain(5, 9, 1), np.ones(4), 0.5, 0.125) == 2


def test_equal_cuts_prefer_the_better_memory_balance_then_the_first() -> None:
    """Cuts after 1, 2, 3 blocks all cost 2: the middle one splits memory evenly."""
    assert _best_split(chain(2, 2, 2), np.ones(4), 0.5, 0.25) == 2
    assert _best_split(chain(2, 2, 2), np.array([1.0, 1.0, 1.0, 1.0]), 0.375, 0.25) in (1, 2)
    assert _best_split(chain(2, 2), np.array([1.0, 2.0, 1.0]), 0.5, 0.5) == 1  # ¼ and ¾ equally far: the first


def test_memory_shares_decide_the_allowed_cuts() -> None:
    """Memory 1, 1, 6: a ½ share is nearest after block 2 (¼ of memory) … no cut lands within ± 0.1, so the
    nearest one is taken whatever it costs."""
    assert _best_split(chain(0.1, 50), np.array([1.0, 1.0, 6.0]), 0.5, 0.1) == 2
    assert _best_split(chain(50, 0.1), np.array([6.0, 1.0, 1.0]), 0.5, 0.1) == 1


def test_fiedler_order_of_two_blocks_or_fewer_is_the_identity() -> None:
    assert list(fiedler_order(np.zeros((2, 2)))) == [0, 1]
    assert list(fiedler_order(np.zeros((1, 1)))) == [0]


def test_every_group_keeps_at_least_one_block_for_each_of_its_k() -> None:
    """Three 1-GPU nodes, one of them far away and heavy in memory, K = 3: each group gets one block."""
    c = cluster(node("a", "A100-80G", 1), node("b", "A100-80G", 1), node("c", "A100-80G", 1), network=10)
    groups = spectral_groups(c, make_blocks(c, 1.0), 3)
    assert sorted(len(g) for g in groups) == [1, 1, 1]
    assert spectral_groups(c, make_blocks(c, 1.0), 1) == [make_blocks(c, 1.0)]


def test_cuts_within_a_millionth_count_as_equal_and_memory_balance_decides() -> None:
    """The cut after block 3 is cheaper than the middle one by 4e-7 (relative): noise, so the balanced middle
    cut wins; a real difference (the first cut, 2.5×) is not a tie."""
    assert _best_split(chain(5, 2, 2 - 8e-7), np.ones(4), 0.5, 0.25) == 2
    assert _best_split(chain(5, 2, 2 - 8e-6), np.ones(4), 0.5, 0.25) == 3


def test_fiedler_order_of_two_linked_blocks_is_their_index_order() -> None:
    assert list(fiedler_order(np.array([[0.0, 1.0], [1.0, 0.0]]))) == [0, 1]


def test_kernighan_lin_tries_each_groups_two_best_connected_neighbours(monkeypatch) -> None:
    """Five 2-GPU nodes, one group each. n0's links to n1..n4 are 100, 90, 80, 70 Gbit/s, every other link 10:
    n0 pairs with n1 and n2; n1..n4 each with n0 and the lowest-indexed of their equal 10 Gbit/s links
    (n1 → n2, the others → n1). KL runs once per pair, in index order."""
    import networkx as nx

    names = [f"n{i}" for i in range(5)]
    c = cluster(
        *(node(n, "A100-80G", 2) for n in names),
        network=10,
        links=[("n0", "n1", 100), ("n0", "n2", 90), ("n0", "n3", 80), ("n0", "n4", 70)],
    )
    groups = [[(f"{n}/0",), (f"{n}/1",)] for n in names]
    tried: list[tuple[str, str]] = []

    def record(graph, partition, **kwargs):
        tried.append(tuple(sorted(next(iter(side))[0].split("/")[0] for side in partition)))
        return partition

    monkeypatch.setattr(nx.algorithms.community, "kernighan_lin_bisection", record)
    assert kernighan_lin_refine(c, groups, lambda gpus: True, seed=0) == groups
    assert tried == [("n0", "n1"), ("n0", "n2"), ("n0", "n3"), ("n0", "n4"), ("n1", "n2"), ("n1", "n3"), ("n1", "n4")]
