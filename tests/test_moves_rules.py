"""scheduler.moves on a fake scorer: which pairs of groups get two-group moves, the exact shares a node-share
move carries, and where recruited GPUs may go. Expectations are enumerated by hand from the module docstring.

The fake scorer knows nodes from GPU names ("n/i" is on node n), admits every group in one role except the
groups the test calls idle, and reports the flow each replica carries.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from planner.scheduler.moves import (
    Move,
    _offer,
    _pair_moves,
    _pairs,
    _recruit_moves,
    candidate_moves,
    halves,
    role_choices,
)


class FakeScorer:
    roles = ("decode",)

    def __init__(self, gpus, idle=(), flow=None) -> None:
        self.cluster = SimpleNamespace(gpu_by_id={g: SimpleNamespace(node=g.split("/")[0]) for g in gpus})
        self.idle = {tuple(sorted(g)) for g in idle}
        self.flow = flow or {}

    def assessment(self, group, role, variant=()):
        group = tuple(sorted(group))
        return None if group in self.idle or role not in self.roles else SimpleNamespace(id=group)

    def parts(self, group):
        by_node: dict[str, list[str]] = {}
        for g in group:
            by_node.setdefault(g.split("/")[0], []).append(g)
        return list(by_node.items())

    def layout_moves(self, group, role, variant):
        return [("other layout",)]

    def details(self, state):
        return SimpleNamespace(replica_flow=self.flow)


def items_on(nodes: list[str]) -> list:
    """One single-GPU decode item per entry, on the named node (GPU index = position)."""
    return [((f"{n}/{i}",), "decode", ()) for i, n in enumerate(nodes)]


def test_when_the_far_pairs_fit_the_sample_all_are_taken_without_drawing() -> None:
    """12 groups: 66 pairs, 2 near (two nodes shared by two groups each): the other 64 are exactly the sample
    size, so every pair is returned and the generator is not touched."""
    items = items_on(["x", "x", "y", "y", *(f"n{k}" for k in range(8))])
    scorer = FakeScorer([g for group, *_ in items for g in group])
    rng = np.random.default_rng(7)
    before = rng.bit_generator.state
    pairs = _pairs(scorer, items, rng, 64)
    assert pairs[:2] == [(0, 1), (2, 3)]
    assert sorted(pairs) == [(i, j) for i in range(12) for j in range(i + 1, 12)]
    assert rng.bit_generator.state == before


def test_past_the_sample_size_64_random_far_pairs_are_drawn() -> None:
    """14 groups on 14 nodes: no pair is near, 91 are far, and 64 distinct ones are sampled."""
    items = items_on([f"n{k}" for k in range(14)])
    scorer = FakeScorer([g for group, *_ in items for g in group])
    pairs = _pairs(scorer, items, np.random.default_rng(0), 64)
    assert len(pairs) == len(set(pairs)) == 64
    assert pairs == sorted(pairs) and all(0 <= i < j < 14 for i, j in pairs)


def test_sampled_far_pairs_are_never_near_ones() -> None:
    """14 groups, 8 of them two to a node (4 near pairs): the near pairs come first, then 64 others."""
    items = items_on(["x", "x", "y", "y", "z", "z", "w", "w", *(f"n{k}" for k in range(6))])
    scorer = FakeScorer([g for group, *_ in items for g in group])
    for seed in range(3):
        pairs = _pairs(scorer, items, np.random.default_rng(seed), 64)
        assert pairs[:4] == [(0, 1), (2, 3), (4, 5), (6, 7)]
        assert len(pairs) == len(set(pairs)) == 68


def test_an_idle_group_is_paired_with_every_other_group() -> None:
    items = items_on(["a", "b", "c", "d"])
    scorer = FakeScorer([g for group, *_ in items for g in group], idle=[("c/2",)])
    assert _pairs(scorer, items, np.random.default_rng(0), 0) == [(0, 2), (1, 2), (2, 3)]


def moved_shares(src: tuple, dst: tuple) -> set:
    """The GPU sets that node-share moves carry from src to dst (both directions generated; kept: src → dst)."""
    scorer = FakeScorer([*src, *dst])
    items = [(src, "decode", ()), (dst, "decode", ())]
    moves: dict = {}
    _pair_moves(scorer, items, [(0, 1)], "prefill", moves)
    shares = set()
    for move in moves.values():
        added = [set(group) for group, *_ in move.added]
        if len(added) == 2 and added[0] < set(src) and added[1] > set(dst):
            shares.add(tuple(sorted(set(src) - added[0])))
    return shares


def test_a_node_share_moves_whole_or_half_when_even() -> None:
    """src has 2 GPUs on a (even: the pair or its first half) and 3 on b (odd: only all three)."""
    src = ("a/0", "a/1", "b/0", "b/1", "b/2")
    assert moved_shares(src, ("c/0",)) == {("a/0", "a/1"), ("a/0",), ("b/0", "b/1", "b/2")}


def test_a_group_on_one_node_moves_only_its_half() -> None:
    """The whole share would empty the group: only the half (2 of 4) moves; the single-GPU dst moves nothing."""
    assert moved_shares(("a/0", "a/1", "a/2", "a/3"), ("c/0",)) == {("a/0", "a/1")}


def recruit_moves(items, scorer) -> list[Move]:
    moves: dict = {}
    _recruit_moves(scorer, tuple(items), list(items), moves)
    return list(moves.values())


def test_recruited_gpus_join_only_live_replicas_on_their_node() -> None:
    """r/0 is idle; r/1 is a live replica on r, h/0 a live replica on h: the pooled r/0 becomes a replica of its
    own or joins r/1, never h/0."""
    idle, near, far = (("r/0",), "decode", ()), (("r/1",), "decode", ()), (("h/0",), "decode", ())
    scorer = FakeScorer(["r/0", "r/1", "h/0"], idle=[("r/0",)], flow={("r/1",): 1.0, ("h/0",): 1.0})
    found = {(m.removed, m.added) for m in recruit_moves([idle, near, far], scorer)}
    assert found == {((idle,), ((("r/0",), "decode", ()),)), ((idle, near), ((("r/0", "r/1"), "decode", ()),))}


def test_a_replica_without_flow_is_spare_and_a_nodes_spare_gpus_are_pooled() -> None:
    """r/0 and r/1 carry no flow: both are pooled into one replica (and may join r/2, which carries flow);
    nothing is recruited when every replica carries flow."""
    a, b, live = (("r/0",), "decode", ()), (("r/1",), "decode", ()), (("r/2",), "decode", ())
    scorer = FakeScorer(["r/0", "r/1", "r/2"], flow={("r/2",): 2.0, ("r/0",): 0.0})
    found = {(m.removed, m.added) for m in recruit_moves([a, b, live], scorer)}
    assert found == {
        ((a, b), ((("r/0", "r/1"), "decode", ()),)),
        ((a, b, live), ((("r/0", "r/1", "r/2"), "decode", ()),)),
    }
    busy = FakeScorer(["r/0", "r/1", "r/2"], flow={("r/0",): 1.0, ("r/1",): 1.0, ("r/2",): 2.0})
    assert recruit_moves([a, b, live], busy) == []


def test_a_donor_spanning_nodes_leaves_its_other_gpus_idle() -> None:
    donor = (("r/0", "s/0"), "decode", ())
    scorer = FakeScorer(["r/0", "s/0"], idle=[("r/0", "s/0")])
    found = {(m.removed, m.added) for m in recruit_moves([donor], scorer)}
    assert found == {
        ((donor,), ((("r/0",), "decode", ()), (("s/0",), "decode", ()))),
        ((donor,), ((("s/0",), "decode", ()), (("r/0",), "decode", ()))),
    }


def test_a_move_offered_twice_keeps_the_more_urgent_priority_and_its_first_place() -> None:
    moves: dict = {}
    first, again, other = Move(3, ("x",), ("y",)), Move(1, ("x",), ("y",)), Move(2, ("p",), ("q",))
    _offer(moves, first)
    _offer(moves, other)
    _offer(moves, again)
    _offer(moves, Move(2, ("x",), ("y",)))
    assert list(moves.values()) == [Move(1, ("x",), ("y",)), other]


def priorities(bottleneck: str) -> dict:
    """Each move from {a/0, a/1} prefill + {b/0} decode, as (kind, removed groups, added (group, role)s) → priority."""
    scorer = FakeScorer(["a/0", "a/1", "b/0"])
    scorer.roles = ("prefill", "decode")
    state = ((("a/0", "a/1"), "prefill", ()), (("b/0",), "decode", ()))
    found = {}
    moves = candidate_moves(scorer, state, bottleneck, np.random.default_rng(0), recruit=False)
    assert [m.priority for m in moves] == sorted(m.priority for m in moves)
    for m in moves:
        key = (tuple(g for g, *_ in m.removed), tuple((g, r) for g, r, v in m.added if not v), bool(m.added[0][2]))
        found[key] = m.priority
    return found


def test_moves_aimed_at_a_prefill_bottleneck_come_first() -> None:
    """Flip to prefill 0, split the prefill group 1, merges 2, flip to decode 2, swaps, shares and layouts 3."""
    found = priorities("prefill")
    g1, g2 = ("a/0", "a/1"), ("b/0",)
    assert found[((g2,), ((g2, "prefill"),), False)] == 0
    assert found[((g1,), ((g1, "decode"),), False)] == 2
    splits = [p for (removed, added, _), p in found.items() if removed == (g1,) and len(added) == 2]
    assert splits == [1] * 4  # {a/0}, {a/1} in every pair of roles
    assert found[((g1, g2), ((g1, "decode"), (g2, "prefill")), False)] == 3  # swap
    merged = [p for (removed, added, _), p in found.items() if len(removed) == 2 and len(added) == 1]
    assert merged == [2, 2]
    moved = {("a/1",), ("a/0", "b/0")}
    shares = [p for (_, added, _), p in found.items() if len(added) == 2 and {g for g, _ in added} == moved]
    assert shares == [3] * 4  # a/0 joins b/0, in every pair of roles
    assert found[((g1,), (), True)] == 3 and found[((g2,), (), True)] == 3  # layout moves
    assert len(found) == 2 + 4 + 1 + 2 + 4 + 2


def test_a_kv_bound_plan_tries_swaps_and_layouts_first() -> None:
    found = priorities("kv_transfer")
    g1, g2 = ("a/0", "a/1"), ("b/0",)
    assert found[((g1, g2), ((g1, "decode"), (g2, "prefill")), False)] == 1
    assert found[((g1,), (), True)] == 1
    assert found[((g2,), ((g2, "prefill"),), False)] == 2  # no flip is aimed at the bottleneck
    splits = [p for (removed, added, _), p in found.items() if removed == (g1,) and len(added) == 2]
    assert splits == [3] * 4


def test_halves_cut_between_nodes_or_inside_one_node() -> None:
    scorer = FakeScorer([])
    three = ("a/0", "b/0", "b/1", "c/0")
    assert halves(scorer, three) == [(("a/0",), ("b/0", "b/1", "c/0"))]  # ⌊3 / 2⌋ = 1 node first
    four = ("a/0", "b/0", "c/0", "d/0")
    assert halves(scorer, four) == [(("a/0", "b/0"), ("c/0", "d/0"))]
    five = tuple(f"a/{i}" for i in range(5))
    assert halves(scorer, five) == [(five[:1], five[1:]), (five[:2], five[2:])]  # one off, and ⌊5 / 2⌋
    assert halves(scorer, ("a/0",)) == []


def test_role_choices_cover_every_feasible_role_and_park_what_fits_none() -> None:
    scorer = FakeScorer([], idle=[("b/0",)])
    scorer.roles = ("prefill", "decode")
    choices = list(role_choices(scorer, (("a/1", "a/0"), ("b/0",))))
    assert choices == [
        ((("a/0", "a/1"), "prefill", ()), (("b/0",), "decode", ())),
        ((("a/0", "a/1"), "decode", ()), (("b/0",), "decode", ())),
    ]


def test_a_move_applies_only_while_what_it_removes_is_there() -> None:
    x, y, z = (("x",), "decode", ()), (("y",), "decode", ()), (("z",), "prefill", ())
    move = Move(0, (y,), (z, (("a",), "decode", ())))
    assert move.apply((x, y)) == ((("a",), "decode", ()), x, z)
    assert move.apply((x,)) is None
    assert Move(0, (x, x), ()).apply((x,)) is None  # removing one item twice needs it twice
