"""Phase 1 (scheduler.partition): TP-friendly blocks, memory-balanced well-connected groups, Kernighan–Lin that
keeps every group feasible, the K values tried. Memory figures are derived from the catalogue's GPU sizes."""

from __future__ import annotations

import numpy as np
import pytest
from builders import cluster, node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.scheduler.partition import (
    block_bandwidth,
    candidate_k,
    fiedler_order,
    flatten,
    kernighan_lin_refine,
    make_blocks,
    spectral_groups,
)


def usable(c, gpu_id: str) -> float:
    return c.gpu_by_id[gpu_id].gpu.memory * c.memory_utilization


def memory(c, gpus) -> float:
    return sum(c.gpu_by_id[g].gpu.memory for g in gpus)


def internal_bandwidth(c, group) -> float:
    """Σ over pairs of the group's blocks of node-pair bandwidth × GPU pairs: what Kernighan–Lin raises."""
    node = {b: c.gpu_by_id[b[0]].node for b in group}
    return sum(
        c.node_bandwidth(node[x], node[y]) * len(x) * len(y) for i, x in enumerate(group) for y in group[i + 1 :]
    )


# ----------------------------------------------------------------------------- blocks


@pytest.mark.parametrize(("replicas_per_gpu", "size"), [(2.0, 1), (0.9, 2), (0.45, 4), (0.2, 8), (0.01, 8)])
def test_a_block_is_the_smallest_power_of_two_that_holds_a_replica(replicas_per_gpu, size) -> None:
    """On an 8-GPU node a block of `size` GPUs holds one replica (replica memory = 1/replicas_per_gpu GPUs),
    the next smaller power of two does not; a replica larger than the node gets the whole node."""
    c = cluster(node("a", "A100-80G", 8))
    need = usable(c, "a/0") / replicas_per_gpu
    blocks = make_blocks(c, need)
    assert {len(b) for b in blocks} == {size}
    assert sorted(flatten(blocks)) == sorted(slot.id for slot in c.gpus)
    assert all(len(b) * usable(c, b[0]) >= need or len(b) == 8 for b in blocks)
    assert size == 1 or (size // 2) * usable(c, "a/0") < need


def test_blocks_stay_in_their_node_and_divide_it() -> None:
    """A 6-GPU node needing 3 GPUs per replica gets blocks of 2 (a power of two dividing 6), not 4."""
    c = cluster(node("a", "A100-80G", 6), node("b", "L40", 4))
    need = 2.5 * usable(c, "a/0")
    blocks = make_blocks(c, need)
    by_node = {}
    for b in blocks:
        nodes = {c.gpu_by_id[g].node for g in b}
        assert len(nodes) == 1, b
        by_node.setdefault(nodes.pop(), set()).add(len(b))
    assert by_node == {"a": {2}, "b": {4}}
    assert sorted(flatten(blocks)) == sorted(slot.id for slot in c.gpus)


def test_block_bandwidth_is_node_bandwidth_times_gpu_pairs() -> None:
    c = cluster(node("a", "A100-80G", 4), node("b", "L40", 2), network=100)
    blocks = [("a/0", "a/1"), ("a/2", "a/3"), ("b/0",), ("b/1",)]
    weights = block_bandwidth(c, blocks)
    nvlink, pcie, net = (c.node_bandwidth("a", "a"), c.node_bandwidth("b", "b"), c.node_bandwidth("a", "b"))
    assert np.allclose(np.diag(weights), 0.0) and np.allclose(weights, weights.T)
    assert weights[0, 1] == pytest.approx(nvlink * 4)
    assert weights[2, 3] == pytest.approx(pcie * 1)
    assert weights[0, 2] == pytest.approx(net * 2) and weights[1, 3] == pytest.approx(net * 2)


def test_fiedler_order_keeps_each_tightly_linked_cluster_together() -> None:
    """Two cliques joined by one weak edge: the Fiedler vector puts one clique before the other."""
    weights = np.zeros((6, 6))
    for clique in ((0, 2, 4), (1, 3, 5)):
        for i in clique:
            for j in clique:
                if i != j:
                    weights[i, j] = 10.0
    weights[4, 5] = weights[5, 4] = 0.1
    order = list(fiedler_order(weights))
    assert sorted(order) == list(range(6))
    assert {frozenset(order[:3]), frozenset(order[3:])} == {frozenset({0, 2, 4}), frozenset({1, 3, 5})}


# ----------------------------------------------------------------------------- spectral groups


def test_k_groups_of_equal_nodes_are_the_nodes() -> None:
    """Four identical 2-GPU nodes on a slow network, K = 4: each group is one node (memory-balanced and every
    group's GPUs talk over NVLink)."""
    c = cluster(*(node(f"n{i}", "A100-80G", 2) for i in range(4)), network=25)
    blocks = make_blocks(c, 0.5 * usable(c, "n0/0"))
    groups = spectral_groups(c, blocks, 4)
    assert sorted(sorted(flatten(g)) for g in groups) == [[f"n{i}/0", f"n{i}/1"] for i in range(4)]


def test_the_split_follows_the_cheapest_cut_within_the_memory_tolerance() -> None:
    """One 4×80 GB node and two 4×40 GB nodes, the 40 GB nodes joined by a fast link: K = 2 cuts the slow links,
    320 GB on each side."""
    c = cluster(
        node("big", "A100-80G", 4),
        node("s1", "A100-40G", 4),
        node("s2", "A100-40G", 4),
        network=10,
        links=[("s1", "s2", 400)],
    )
    groups = spectral_groups(c, make_blocks(c, 0.5 * usable(c, "s1/0")), 2)
    assert sorted(memory(c, flatten(g)) for g in groups) == pytest.approx([320e9, 320e9])
    assert {frozenset(c.gpu_by_id[g].node for g in flatten(group)) for group in groups} == {
        frozenset({"big"}),
        frozenset({"s1", "s2"}),
    }


def test_memory_balance_overrides_a_cheaper_but_lopsided_cut() -> None:
    """A lone GPU on 1 Gbit/s links beside three 4-GPU nodes: cutting it off is the cheapest cut but leaves one
    group with 1/13 of the memory; each of K = 2 groups must get its share ± half a group's share (25–75 %)."""
    c = cluster(
        node("lone", "A100-80G", 1),
        *(node(f"n{i}", "A100-80G", 4) for i in range(3)),
        network=100,
        links=[("lone", f"n{i}", 1) for i in range(3)],
    )
    groups = spectral_groups(c, make_blocks(c, 0.5 * usable(c, "n0/0")), 2)
    total = memory(c, [slot.id for slot in c.gpus])
    assert all(0.25 <= memory(c, flatten(g)) / total <= 0.75 for g in groups), [flatten(g) for g in groups]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=5),
    gpus=st.lists(st.sampled_from(["A100-80G", "L40", "A100-40G"]), min_size=5, max_size=5),
    k=st.integers(1, 8),
)
def test_spectral_groups_partition_the_blocks_into_k_nonempty_groups(counts, gpus, k) -> None:
    c = cluster(*(node(f"n{i}", gpus[i], n) for i, n in enumerate(counts)))
    blocks = make_blocks(c, 0.6 * usable(c, "n0/0"))
    groups = spectral_groups(c, blocks, k)
    assert len(groups) == min(k, len(blocks))
    assert all(groups)
    assert sorted(b for g in groups for b in g) == sorted(blocks)


# ----------------------------------------------------------------------------- Kernighan–Lin


def crossed() -> tuple:
    """Nodes a (2×A100-80G) and b (2×L40) on a slow link, grouped badly: each group takes one GPU of each."""
    c = cluster(node("a", "A100-80G", 2), node("b", "L40", 2), network=10)
    return c, [[("a/0",), ("b/0",)], [("a/1",), ("b/1",)]]


def test_kernighan_lin_regroups_gpus_by_node_when_every_group_still_fits() -> None:
    c, groups = crossed()
    refined = kernighan_lin_refine(c, groups, lambda gpus: True, seed=0)
    assert sorted(sorted(flatten(g)) for g in refined) == [["a/0", "a/1"], ["b/0", "b/1"]]
    assert sum(internal_bandwidth(c, g) for g in refined) > sum(internal_bandwidth(c, g) for g in groups)


def test_kernighan_lin_never_makes_a_group_infeasible() -> None:
    """Only groups holding 100 GB fit: the two L40s (96 GB) alone would not, so the swap is refused."""
    c, groups = crossed()

    def fits(gpus) -> bool:
        return memory(c, gpus) >= 100e9

    assert all(fits(flatten(g)) for g in groups)
    refined = kernighan_lin_refine(c, groups, fits, seed=0)
    assert all(fits(flatten(g)) for g in refined)
    assert sorted(sorted(flatten(g)) for g in refined) == sorted(sorted(flatten(g)) for g in groups)


def test_kernighan_lin_keeps_the_groups_when_a_swap_gains_nothing() -> None:
    """PCIe 4 inside the nodes and a network just as fast: every grouping has the same internal bandwidth, so the
    crossed groups stay as they are."""
    c = cluster(node("a", "A100-80G", 2, interconnect="pcie4", nic=400), node("b", "L40", 2, nic=400), network=252)
    assert c.node_bandwidth("a", "a") == c.node_bandwidth("a", "b") == c.node_bandwidth("b", "b")
    groups = [[("a/0",), ("b/0",)], [("a/1",), ("b/1",)]]
    assert kernighan_lin_refine(c, groups, lambda gpus: True, seed=0) == groups


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.sampled_from([1, 2, 4]), min_size=2, max_size=4),
    gpus=st.lists(st.sampled_from(["A100-80G", "L40", "A100-40G"]), min_size=4, max_size=4),
    k=st.integers(2, 4),
    threshold=st.sampled_from([0.0, 60e9, 100e9]),
    seed=st.integers(0, 3),
)
def test_kernighan_lin_keeps_blocks_feasibility_and_never_loses_bandwidth(counts, gpus, k, threshold, seed) -> None:
    c = cluster(*(node(f"n{i}", gpus[i], n) for i, n in enumerate(counts)), network=25)
    blocks = make_blocks(c, 0.5 * usable(c, "n0/0"))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(blocks))
    groups = [[blocks[i] for i in order[j::k]] for j in range(min(k, len(blocks)))]

    def fits(gpus) -> bool:
        return memory(c, gpus) >= threshold

    refined = kernighan_lin_refine(c, groups, fits, seed=seed)
    assert sorted(b for g in refined for b in g) == sorted(blocks)
    assert len(refined) == len(groups)
    for before, after in zip(groups, refined, strict=True):
        if not fits(flatten(before)):
            continue
        assert fits(flatten(after)), "a feasible group became infeasible"
    total = sum(internal_bandwidth(c, g) for g in refined)
    assert total >= sum(internal_bandwidth(c, g) for g in groups) * (1 - 1e-9)


# ----------------------------------------------------------------------------- K


def test_candidate_k_centres_on_memory_over_replica_memory() -> None:
    """8×A100-80G and a replica needing an eighth of all usable memory: K0 = 8; tried are 7, 8, 9, three quarters
    of K0 (6, for plans whose replicas need more than their share) and one group per block (16)."""
    c = cluster(node("a", "A100-80G", 8))
    total = 8 * usable(c, "a/0")
    assert candidate_k(c, total / 8 * (1 - 1e-9), n_blocks=16) == [6, 7, 8, 9, 16]
    assert candidate_k(c, total / 4 * (1 - 1e-9), n_blocks=8) == [3, 4, 5, 8]


@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_candidate_k_never_exceeds_the_blocks_nor_drops_below_one(n_blocks) -> None:
    c = cluster(node("a", "A100-80G", 8))
    ks = candidate_k(c, usable(c, "a/0") / 4, n_blocks=n_blocks)  # K0 = 32 replicas, far more than blocks
    assert ks and ks[-1] == n_blocks and ks[0] >= 1
    huge = candidate_k(c, 100 * usable(c, "a/0"), n_blocks=n_blocks)  # not even one replica: K0 = 1
    assert huge == sorted({1, 2, n_blocks} & set(range(1, n_blocks + 1))), "K0 − 1 = 0 is no K"
