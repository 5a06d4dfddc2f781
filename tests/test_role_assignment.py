"""Phase 2 (scheduler.roles): roles split the groups at one point of the prefill-affinity order, the best point
by max-flow (checked against every split point), whatever the floor below the best."""

from __future__ import annotations

import itertools
import math

import pytest
from builders import cluster, node

from planner.scheduler.roles import assign_roles
from planner.scheduler.scoring import Scorer, canonical


@pytest.fixture(scope="module")
def mixed():
    return cluster(node("h", "H100-SXM", 2), node("a", "A100-80G", 2), node("l", "L40", 2), node("s", "A100-40G", 2))


def affinity(scorer: Scorer, group) -> float:
    """Prefill capacity ÷ decode capacity (the module docstring's order); a group fitting only one role goes to it."""
    p, d = scorer.assessment(group, "prefill"), scorer.assessment(group, "decode")
    if p is None and d is None:
        return -math.inf
    if d is None:
        return math.inf
    return 0.0 if p is None else p.capacity_rps / d.capacity_rps


def prefix_states(scorer: Scorer, groups):
    ordered = sorted(groups, key=lambda g: (-affinity(scorer, g), g))
    for split in range(len(ordered) + 1):
        yield canonical([(g, "prefill" if i < split else "decode") for i, g in enumerate(ordered)])


GROUPS = [("h/0",), ("a/0",), ("l/0",), ("s/0", "s/1"), ("l/1",), ("a/1",), ("h/1",)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_small_inputs_get_the_best_split_point(mixed, n) -> None:
    """Up to 3 groups the scan is exhaustive: the state is the best prefix split by max-flow."""
    for groups in itertools.combinations(GROUPS, n):
        scorer = Scorer(mixed, launchable=True, objective="throughput")
        state = assign_roles(scorer, list(groups))
        best = max(scorer.score(s).value for s in prefix_states(scorer, groups))
        assert scorer.score(state).value == pytest.approx(best), groups


def test_prefill_goes_to_the_groups_of_highest_affinity(mixed) -> None:
    scorer = Scorer(mixed, launchable=True, objective="throughput")
    state = assign_roles(scorer, GROUPS)
    assert sorted(g for g, *_ in state) == sorted(tuple(sorted(g)) for g in GROUPS), "every group once"
    assert state in set(prefix_states(scorer, GROUPS)), "the prefill groups are a prefix of the affinity order"
    assert {r for _, r, _ in state} == {"prefill", "decode"}
    assert scorer.score(state).value > 0


def test_larger_inputs_are_at_least_as_good_as_every_coarse_split(mixed) -> None:
    """7 groups: the coarse grid has step ⌊√7⌋ = 2; the answer beats every grid point."""
    scorer = Scorer(mixed, launchable=True, objective="throughput")
    state = assign_roles(scorer, GROUPS)
    states = list(prefix_states(scorer, GROUPS))
    assert all(scorer.score(state).value >= scorer.score(s).value * (1 - 1e-9) for s in states[::2])


def test_a_floor_below_the_best_changes_nothing(mixed) -> None:
    scorer = Scorer(mixed, launchable=True, objective="throughput")
    state = assign_roles(scorer, GROUPS)
    value = scorer.score(state).value
    assert assign_roles(Scorer(mixed, launchable=True, objective="throughput"), GROUPS, floor=0.9 * value) == state


def test_a_group_that_fits_only_prefill_is_never_decode() -> None:
    """A 12 ms TPOT SLO that one L40 cannot meet in decode: its affinity is infinite, so it is a prefill replica."""
    c = cluster(node("h", "H100-SXM", 2), node("l", "L40", 1), tpot="12ms")
    scorer = Scorer(c, launchable=True, objective="throughput")
    groups = [("h/0", "h/1"), ("l/0",)]
    if scorer.assessment(("l/0",), "decode") is not None or scorer.assessment(("l/0",), "prefill") is None:
        pytest.skip("the cost model moved: L40 meets a 12 ms TPOT or no longer prefills")
    assert affinity(scorer, ("l/0",)) == math.inf
    state = {g: r for g, r, _ in assign_roles(scorer, groups)}
    assert state[("l/0",)] == "prefill"
