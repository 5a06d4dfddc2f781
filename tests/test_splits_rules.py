"""scheduler.splits: the prefill stage-time tables and the min-max layer split, against independent oracles.

- `min_max_split` against brute force over every composition of the layers (the smallest slowest stage,
  each stage ≥ 1 layer and within its cap; None exactly when nothing fits), and its documented tie rule.
- `prefill_stage_times`: a stage's time is proportional to its layers unless it is the last (which also runs
  the LM head), identical stages get identical rows, and a stage's row is infinite beyond its memory cap.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from builders import cluster, node
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.scheduler.splits import min_max_split, prefill_stage_times

INF = math.inf


def table(*times: float) -> np.ndarray:
    """A stage's row: index n is its time with n layers (n = 0 never holds a stage)."""
    return np.array([INF, *times])


def brute_force(times, layers: int) -> float | None:
    """The least slowest-stage time over every split with each stage at 1..cap layers (None: none fits)."""
    best = None
    for cuts in itertools.combinations(range(1, layers), len(times) - 1):
        counts = np.diff([0, *cuts, layers])
        slowest = max(t[n] if n < len(t) else INF for t, n in zip(times, counts))
        if math.isfinite(slowest) and (best is None or slowest < best):
            best = slowest
    return best


@st.composite
def stage_tables(draw):
    layers = draw(st.integers(1, 9))
    stages = draw(st.integers(1, 4))
    times = []
    for _ in range(stages):
        cap = draw(st.integers(0, layers))
        steps = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=cap, max_size=cap))
        row = np.full(layers + 1, INF)
        row[1 : cap + 1] = np.cumsum([0.5 + s for s in steps]) if cap else []  # grows with the layers
        times.append(row)
    return times, layers


@settings(max_examples=120, deadline=None)
@given(stage_tables())
def test_min_max_split_matches_brute_force(case) -> None:
    times, layers = case
    found = min_max_split(times, layers)
    best = brute_force(times, layers)
    if best is None:
        assert found is None
        return
    assert found is not None and sum(found) == layers and min(found) >= 1
    assert max(t[n] for t, n in zip(times, found)) == best


def test_a_single_stage_takes_every_layer() -> None:
    assert min_max_split([table(1.0)], 1) == [1]
    assert min_max_split([table(2.0, 3.0, 4.0, 5.0, 6.0)], 5) == [5]


def test_equal_times_everywhere_still_split() -> None:
    """Every finite time equal: the one candidate bound is the answer."""
    assert min_max_split([table(1.0), table(1.0)], 2) == [1, 1]


def test_a_stage_at_one_layer_keeps_it_while_the_surplus_comes_off_others() -> None:
    """Stage 0 holds one layer (5 s), stage 1 any count up to 5 at 1 s a layer: the bound 5 s lets stage 1
    take 5, three too many; they come off stage 1 even though stage 0 is as slow at its single layer."""
    assert min_max_split([table(5.0), table(1.0, 2.0, 3.0, 4.0, 5.0)], 3) == [1, 2]


def test_the_surplus_comes_off_the_slowest_stage_first() -> None:
    """At the optimum bound (3 s) the stages take 3 and 2 layers, one too many; stage 0 is slower at its count
    (3 s against 2 s) so it gives the layer up."""
    assert min_max_split([table(1.0, 2.0, 3.0), table(1.0, 2.0, 4.0)], 4) == [2, 2]
    assert min_max_split([table(1.0, 2.0, 3.0), table(1.5, 3.0, 4.0)], 4) == [2, 2]


def test_equally_slow_stages_give_the_surplus_up_from_the_front() -> None:
    """Identical stages, 3 layers: 2 + 2 at the bound, and the earlier stage gives its layer up."""
    same = table(1.0, 2.0, 3.0, 4.0)
    assert min_max_split([same, same.copy()], 3) == [1, 2]


def test_a_stage_that_fits_only_beyond_the_bound_of_the_others_gets_one_layer() -> None:
    """The second-largest time leaves stage 1 with no layer; only the largest fits it."""
    assert min_max_split([table(1.0, 2.0, 3.0), table(10.0)], 2) == [1, 1]


def test_nothing_fits_more_stages_than_layers_or_a_stage_without_memory() -> None:
    assert min_max_split([table(1.0, 2.0), table(1.0, 2.0), table(1.0, 2.0)], 2) is None
    assert min_max_split([table(1.0, 2.0), table(INF, INF)], 2) is None
    assert min_max_split([np.array([INF])], 1) is None


@pytest.fixture(scope="module")
def a100s():
    return cluster(node("a", "A100-80G", 4))


def test_a_middle_stage_time_is_proportional_to_its_layers(a100s) -> None:
    """No LM head and no step overhead before the last stage: n layers cost n × one layer."""
    first, middle, _ = prefill_stage_times(a100s, [("a/0",), ("a/1",), ("a/2",)], [8, 8, 8])
    for row in (first, middle):
        assert row[1] > 0
        assert row[1:9] == pytest.approx(row[1] * np.arange(1, 9), rel=1e-9)


def test_only_the_last_stage_pays_the_lm_head(a100s) -> None:
    """Three identical GPUs: the first two rows are equal, the last is dearer by the same amount at every count."""
    first, middle, last = prefill_stage_times(a100s, [("a/0",), ("a/1",), ("a/2",)], [8, 8, 8])
    assert np.array_equal(first, middle)
    extra = last[1:9] - first[1:9]
    assert np.all(extra > 0) and extra == pytest.approx(np.full(8, extra[0]), rel=1e-9)


def test_a_stage_row_is_infinite_at_zero_and_beyond_its_cap(a100s) -> None:
    layers = a100s.model.layers
    rows = prefill_stage_times(a100s, [("a/0",), ("a/1", "a/2")], [3, layers + 5])
    assert [len(r) for r in rows] == [layers + 1, layers + 1]
    assert math.isinf(rows[0][0]) and np.all(np.isfinite(rows[0][1:4])) and np.all(np.isinf(rows[0][4:]))
    assert np.all(np.isfinite(rows[1][1:]))
    assert np.all(np.diff(rows[1][1:]) > 0)
