"""scheduler.roles on a fake scorer: the affinity order (prefill-only groups first, then by prefill ÷ decode
capacity, decode-only and unfit groups last), the scan over split points (both ends included), and when
all-colocated wins. The fake's flow value is a table over the number of prefill groups, so the best split
is known by construction."""

from __future__ import annotations

from types import SimpleNamespace

from planner.scheduler.roles import assign_roles

DISAGGREGATED = ("prefill", "decode")


class FakeScorer:
    """capacity[group] = (prefill rps or None, decode rps or None); value(state) by the table below."""

    def __init__(self, capacity, value, roles=DISAGGREGATED, colocated=None) -> None:
        self.capacity, self.value, self.roles, self.colocated = capacity, value, roles, colocated

    def assessment(self, group, role):
        rps = self.capacity[group][0 if role == "prefill" else 1]
        return None if rps is None else SimpleNamespace(capacity_rps=rps)

    def _value(self, state) -> float:
        if all(role == "colocated" for _, role, _ in state):
            return self.colocated
        return self.value(sum(role == "prefill" for _, role, _ in state))

    def bound(self, state, floor=float("-inf")) -> float:
        return self._value(state)

    def score(self, state):
        return SimpleNamespace(value=self._value(state))


def prefill_groups(state) -> set:
    return {group[0] for group, role, _ in state if role == "prefill"}


def uniform(n: int) -> dict:
    return {(f"g{i}",): (1.0, 1.0) for i in range(n)}


def peak_at(best: int, table: dict | None = None):
    """Value 10 at `best` prefill groups, else what `table` says (default 0)."""
    return lambda split: 10.0 if split == best else (table or {}).get(split, 0.0)


def test_prefill_goes_first_to_prefill_only_groups_then_by_capacity_ratio() -> None:
    """Order: p (prefill only) · a (4 ÷ 2) · e (3 ÷ 6) · d (decode only) · x (fits neither)."""
    capacity = {
        ("a",): (4.0, 2.0),
        ("e",): (3.0, 6.0),
        ("d",): (None, 1.0),
        ("p",): (9.0, None),
        ("x",): (None, None),
    }
    expected = [set(), {"p"}, {"p", "a"}, {"p", "a", "e"}, {"p", "a", "e", "d"}, {"p", "a", "e", "d", "x"}]
    for split, prefill in enumerate(expected):
        hill = FakeScorer(capacity, lambda k, best=split: 10.0 - abs(k - best))  # the grid sees the slope
        state = assign_roles(hill, list(capacity))
        assert prefill_groups(state) == prefill, split
        assert len(state) == 5 and {role for _, role, _ in state} <= set(DISAGGREGATED)


def test_a_best_split_of_zero_prefill_groups_is_found() -> None:
    """Nine groups (grid step 3): the all-decode end of the range is scanned, though the grid's next points
    score 1 and 5 and its neighbourhood would lead away."""
    state = assign_roles(FakeScorer(uniform(9), peak_at(0, {1: 1.0, 4: 5.0, 3: 2.0})), list(uniform(9)))
    assert prefill_groups(state) == set()


def test_a_best_split_of_all_groups_is_found() -> None:
    state = assign_roles(FakeScorer(uniform(9), peak_at(9, {8: 5.0})), list(uniform(9)))
    assert len(prefill_groups(state)) == 9


def test_the_best_grid_points_neighbourhood_is_searched() -> None:
    """Grid 0, 3, 6, 9: 6 is the best grid point (5) and 8 (10) lies in its neighbourhood."""
    state = assign_roles(FakeScorer(uniform(9), peak_at(8, {6: 5.0})), list(uniform(9)))
    assert len(prefill_groups(state)) == 8


def test_among_equal_values_the_fewest_prefill_groups_win() -> None:
    state = assign_roles(FakeScorer(uniform(4), lambda split: 3.0 if split in (2, 3) else 0.0), list(uniform(4)))
    assert len(prefill_groups(state)) == 2


def test_everything_colocated_wins_only_when_strictly_better() -> None:
    roles = ("prefill", "decode", "colocated")
    groups = list(uniform(4))
    better = assign_roles(FakeScorer(uniform(4), peak_at(2), roles, colocated=11.0), groups)
    assert {role for _, role, _ in better} == {"colocated"}
    equal = assign_roles(FakeScorer(uniform(4), peak_at(2), roles, colocated=10.0), groups)
    assert len(prefill_groups(equal)) == 2
    not_allowed = assign_roles(FakeScorer(uniform(4), peak_at(2), colocated=11.0), groups)
    assert len(prefill_groups(not_allowed)) == 2


def test_colocated_below_the_floor_is_not_considered() -> None:
    """The floor (the refinement's current value, 12) is above the colocated bound (11)."""
    roles = ("prefill", "decode", "colocated")
    state = assign_roles(FakeScorer(uniform(4), peak_at(2), roles, colocated=11.0), list(uniform(4)), floor=12.0)
    assert {role for _, role, _ in state} != {"colocated"}


def test_only_colocated_allowed_gives_every_group_colocated() -> None:
    scorer = FakeScorer(uniform(3), peak_at(1), ("colocated",), colocated=0.0)
    assert assign_roles(scorer, list(uniform(3))) == tuple(((f"g{i}",), "colocated", ()) for i in range(3))


def test_splits_that_cannot_beat_the_floor_are_not_solved() -> None:
    """Values 0..4 by prefill count, floor 2: splits whose bound is at most 2 (0, 1, 2) are never scored,
    and the answer is the best split, 4."""
    scored: list[int] = []
    scorer = FakeScorer(uniform(4), lambda split: float(split))
    score = scorer.score
    scorer.score = lambda state: scored.append(len(prefill_groups(state))) or score(state)
    state = assign_roles(scorer, list(uniform(4)), floor=2.0)
    assert len(prefill_groups(state)) == 4
    assert scored and min(scored) > 2
