"""Phase 3 (scheduler.refine): each kind of move does what its name says and conserves GPUs; priorities follow the
bottleneck; a climb ends in a local optimum (checked by scoring every move from it) no worse than its starts."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest
from builders import cluster, node

from planner.scheduler.layouts import node_parts
from planner.scheduler.moves import IDLE, Move, candidate_moves, halves
from planner.scheduler.refine import refine
from planner.scheduler.scoring import Scorer, canonical


@pytest.fixture(scope="module")
def c():
    return cluster(node("a", "A100-80G", 4), node("l", "L40", 2), node("h", "H100-SXM", 2), network=100)


def scorer_of(c, colocated: bool = False) -> Scorer:
    return Scorer(c, launchable=True, objective="throughput", roles="mixed" if colocated else "disaggregated")


START = canonical(
    [
        (("a/0", "a/1"), "prefill"),  # splittable in halves
        (("a/2", "a/3"), "decode"),  # shares node a with the first: merge and move candidates
        (("l/0",), "decode"),
        (("h/0", "l/1"), "prefill"),  # spans two nodes: split by node
        (("h/1",), "decode"),
    ]
)


def gpus_of(state) -> Counter:
    return Counter(g for group, *_ in state for g in group)


def kind(move: Move) -> str:
    """What the move is, judged from its effect only (a layout move keeps the group and its role)."""
    removed = [set(g) for g, *_ in move.removed]
    added = [set(g) for g, *_ in move.added]
    if len(removed) == 1 and len(added) == 1:
        if removed != added:
            return "?"
        return "flip" if move.removed[0][1] != move.added[0][1] else "layout"
    if len(removed) == 1 and len(added) == 2:
        return "split"
    if len(removed) == 2 and len(added) == 1:
        return "merge"
    if len(removed) == 2 and len(added) == 2:
        same_groups = sorted(map(sorted, removed)) == sorted(map(sorted, added))
        return "swap" if same_groups else "move"
    return "?"


@pytest.fixture(scope="module")
def moves(c):
    scorer = scorer_of(c)
    return scorer, candidate_moves(scorer, START, "prefill", np.random.default_rng(0))


def test_every_move_conserves_gpus_and_yields_feasible_or_idle_groups(moves) -> None:
    scorer, found = moves
    assert len({(m.removed, m.added) for m in found}) == len(found), "deduplicated"
    assert [m.priority for m in found] == sorted(m.priority for m in found), "most urgent first"
    for move in found:
        after = move.apply(START)
        assert after is not None and after == canonical(after)
        assert gpus_of(after) == gpus_of(START), move
        for group, role, variant in move.added:
            assert role in scorer.roles
            if kind(move) in ("split", "merge", "move"):  # groups a move creates get a role they can serve (or idle)
                assert scorer.assessment(group, role, variant) is not None or (
                    role == IDLE and all(scorer.assessment(group, r) is None for r in scorer.roles)
                ), move


def test_every_kind_of_move_is_proposed(moves) -> None:
    _, found = moves
    assert {kind(m) for m in found} == {"flip", "split", "merge", "move", "swap", "layout"}


def test_flip_changes_one_groups_role_only(moves) -> None:
    _, found = moves
    flips = [m for m in found if kind(m) == "flip"]
    assert {(m.removed[0][0], m.added[0][1]) for m in flips} == {
        (g, r) for g, role, _ in START for r in ("prefill", "decode") if r != role
    }
    assert all(m.removed[0][1] != m.added[0][1] for m in flips)


def test_split_halves_a_group_by_node_or_in_equal_halves(c, moves) -> None:
    _, found = moves
    for m in (m for m in found if kind(m) == "split"):
        whole = m.removed[0][0]
        left, right = (g for g, *_ in m.added)
        assert sorted(left + right) == sorted(whole) and not set(left) & set(right)
        nodes = [{c.gpu_by_id[g].node for g in part} for part in (left, right)]
        assert len(left) == len(right) or not nodes[0] & nodes[1], m
    split = {m.removed[0][0] for m in found if kind(m) == "split"}
    assert split == {g for g, *_ in START if len(g) >= 2}, "every even group can be split; single GPUs cannot"


def test_merge_unites_two_groups(moves) -> None:
    _, found = moves
    for m in (m for m in found if kind(m) == "merge"):
        assert sorted(m.added[0][0]) == sorted(m.removed[0][0] + m.removed[1][0])


def test_swap_exchanges_the_roles_of_two_groups(moves) -> None:
    _, found = moves
    swaps = [m for m in found if kind(m) == "swap"]
    assert swaps
    for m in swaps:
        before = {g: r for g, r, _ in m.removed}
        after = {g: r for g, r, _ in m.added}
        assert set(before.values()) == {"prefill", "decode"}
        assert all(after[g] != before[g] for g in before)


def test_move_shifts_one_nodes_share_or_half_of_it_to_the_other_group(c, moves) -> None:
    _, found = moves
    shifted = [m for m in found if kind(m) == "move"]
    assert shifted
    for m in shifted:
        (src, *_), (dst, *_) = m.removed
        new = {tuple(sorted(g)) for g, *_ in m.added}
        for origin, target in ((src, dst), (dst, src)):
            gained = [g for g in new if set(target) < set(g)]
            if not gained:
                continue
            part = set(gained[0]) - set(target)
            shares = [set(p) for _, p in node_parts(c, origin)]
            assert any(part == s or (len(part) * 2 == len(s) and part < s) for s in shares), m
            break
        else:
            raise AssertionError(f"no group of {m} gained GPUs: {new}")


def test_moves_aimed_at_the_bottleneck_come_first(c) -> None:
    scorer = scorer_of(c)
    rng = np.random.default_rng(0)
    for bottleneck, role in (("prefill", "prefill"), ("decode", "decode")):
        found = candidate_moves(scorer, START, bottleneck, rng)
        urgent = [m for m in found if m.priority == 0]
        assert urgent and all(kind(m) == "flip" and m.added[0][1] == role for m in urgent)
        splits = [m for m in found if kind(m) == "split"]
        assert all((m.priority == 1) == (m.removed[0][1] == role) for m in splits)
    kv = candidate_moves(scorer, START, "kv_transfer", rng)
    assert all(m.priority == 1 for m in kv if kind(m) == "swap")
    assert all(m.priority == 3 for m in candidate_moves(scorer, START, "prefill", rng) if kind(m) == "swap")


def test_colocated_is_a_role_moves_can_take_only_when_allowed(c) -> None:
    rng = np.random.default_rng(0)
    plain = candidate_moves(scorer_of(c), START, "none", rng)
    both = candidate_moves(scorer_of(c, colocated=True), START, "none", rng)
    assert all(r != "colocated" for m in plain for _, r, _ in m.added)
    assert any(r == "colocated" for m in both for _, r, _ in m.added)


def test_a_move_whose_groups_are_gone_does_not_apply() -> None:
    move = Move(0, ((("x/0",), "prefill", ()),), ((("x/0",), "decode", ()),))
    assert move.apply(START) is None


def test_refine_reaches_a_local_optimum_no_worse_than_any_start(c) -> None:
    scorer = scorer_of(c)
    starts = [START, canonical([(g, "decode") for g, *_ in START])]
    result = refine(scorer, starts, np.random.default_rng(0), deadline=time.monotonic() + 60)
    assert result.converged and result.iterations >= 1
    best = scorer.score(result.state).value
    assert all(best >= scorer.score(s).value for s in starts)
    assert gpus_of(result.state) == gpus_of(START)
    for move in candidate_moves(scorer, result.state, scorer.bottleneck(result.state), np.random.default_rng(1)):
        after = move.apply(result.state)
        assert scorer.score(after).value <= best * (1 + 1e-6) + 1e-12, f"{move} still improves"
    again = refine(scorer_of(c), starts, np.random.default_rng(0), deadline=time.monotonic() + 60)
    assert again.state == result.state, "same seed, same result"


def test_refine_stops_at_the_deadline_and_says_so(c) -> None:
    result = refine(scorer_of(c), [START], np.random.default_rng(0), deadline=time.monotonic() - 1)
    assert not result.converged and result.state == START and result.iterations == 0


def test_refine_reaches_the_exhaustive_optimum_on_a_small_cluster() -> None:
    """Four GPUs of two types: every grouping × roles × layouts is enumerable (reference.exact)."""
    from planner.reference.exact import exact_optimum

    small = cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100)
    scorer = scorer_of(small)
    start = canonical([((g.id,), "decode") for g in small.gpus])
    result = refine(scorer, [start], np.random.default_rng(0), deadline=time.monotonic() + 60)
    best = exact_optimum(small).throughput_rps
    assert scorer.score(result.state).throughput_rps >= 0.98 * best


def test_a_large_state_climbs_on_a_sample_of_its_moves() -> None:
    """32 groups give hundreds of candidate moves: each step scores the bottleneck moves and a sample of the rest,
    and the climb still only improves, conserving GPUs."""
    big = cluster(*(node(f"n{i}", "L40", 8) for i in range(4)), network=100)
    scorer = scorer_of(big)
    start = canonical([((g.id,), "decode" if i % 3 else "prefill") for i, g in enumerate(big.gpus)])
    moves = candidate_moves(scorer, start, "none", np.random.default_rng(0))
    assert len(moves) > 256
    result = refine(scorer, [start], np.random.default_rng(0), deadline=time.monotonic() + 3)
    assert scorer.score(result.state).value >= scorer.score(start).value
    assert gpus_of(result.state) == gpus_of(start)


def test_one_nodes_group_splits_in_halves_and_one_gpu_off() -> None:
    five = cluster(node("x", "A100-80G", 5))
    gpus = tuple(f"x/{i}" for i in range(5))
    assert halves(scorer_of(five), gpus) == [(gpus[:1], gpus[1:]), (gpus[:2], gpus[2:])]
    assert halves(scorer_of(five), gpus[:2]) == [(gpus[:1], gpus[1:2])]


def test_moves_with_an_idle_group_never_pair_it_with_itself() -> None:
    """Llama-3.1-70B: a single A100 holds no replica, so ("a/4",) is idle; every move still conserves GPUs and no
    group it makes holds a GPU twice."""
    c70 = cluster(node("a", "A100-80G", 5), model="llama-3.1-70b")
    scorer = scorer_of(c70)
    state = canonical([(("a/0", "a/1"), "prefill"), (("a/2", "a/3"), "decode"), (("a/4",), IDLE)])
    assert scorer.assessment(("a/4",), IDLE) is None
    found = candidate_moves(scorer, state, "prefill", np.random.default_rng(0))
    assert any(len(m.removed) == 2 and ("a/4",) in [g for g, *_ in m.removed] for m in found)
    for move in found:
        assert len({g for g, *_ in move.removed}) == len(move.removed), move
        after = move.apply(state)
        assert gpus_of(after) == gpus_of(state), move
