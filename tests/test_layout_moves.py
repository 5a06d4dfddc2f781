"""Layout variants, the moves that produce them, prefill splits, and the recruit move (issue 13).

Oracles: brute force over every split of a small pipeline; hand-counted neighbourhoods; the variant
round trip; the flow value of the state a move produces, recomputed by `plan_flow`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from planner.costs.layout import Layout, Stage
from planner.inputs.cluster import load_cluster
from planner.scheduler.assess import assess
from planner.scheduler.layouts import balanced_split, candidate_layouts
from planner.scheduler.moves import candidate_moves, halves
from planner.scheduler.network import plan_flow
from planner.scheduler.scoring import Scorer, canonical
from planner.scheduler.splits import min_max_split
from planner.scheduler.variants import layout_moves, layout_of_variant, variant_of

PIPE = """
model: llama-2-13b
workload: {prompt_tokens: 1024, output_tokens: 128}
nodes:
  - {name: a, gpu: L4, count: 2, nic: 100Gbps}
  - {name: b, gpu: A10, count: 2, nic: 100Gbps}
  - {name: c, gpu: A100-80G, count: 2, nic: 100Gbps}
network:
  default: {bandwidth: 100Gbps, latency: 10us}
"""


@pytest.fixture
def pipe(write_yaml, catalog):
    return load_cluster(write_yaml(PIPE), catalog)


def brute_force_split(cluster, stage_gpus) -> float:
    """The best prefill capacity over every split of the layers (each stage ≥ 1 layer)."""
    layers, best = cluster.model.layers, 0.0
    for cuts in itertools.combinations(range(1, layers), len(stage_gpus) - 1):
        bounds = [0, *cuts, layers]
        layout = Layout(tuple(Stage(g, a, b) for g, a, b in zip(stage_gpus, bounds, bounds[1:])))
        if (found := assess(cluster, "prefill", layout)) is not None:
            best = max(best, found.capacity_rps)
    return best


@pytest.mark.parametrize("stages", [[("a/0",), ("b/0",)], [("a/0",), ("b/0",), ("a/1",)], [("b/0",), ("a/0",)]])
def test_prefill_split_is_the_brute_force_optimum(pipe, stages):
    split = balanced_split(pipe, stages, "prefill")  # min_max_split over the stages' memory caps
    bounds = np.cumsum([0, *split])
    layout = Layout(tuple(Stage(g, int(a), int(b)) for g, a, b in zip(stages, bounds, bounds[1:])))
    found = assess(pipe, "prefill", layout)
    assert found is not None
    assert found.capacity_rps == pytest.approx(brute_force_split(pipe, stages), rel=1e-12)


def test_min_max_split_refuses_what_cannot_fit():
    inf = np.inf
    assert min_max_split([np.array([inf, 1.0, inf]), np.array([inf, 1.0, inf])], 3) is None  # caps 1 + 1 < 3
    assert min_max_split([np.array([inf, 1.0, 2.0, 3.0])], 3) == [3]
    assert min_max_split([np.array([inf, 1.0, 2.0]), np.array([inf, 5.0, 9.0])], 3) == [2, 1]


def test_candidate_layouts_try_every_node_order(pipe):
    layouts = candidate_layouts(pipe, ["a/0", "b/0", "c/0"], "prefill", True)
    orders = {tuple(dict.fromkeys(g.split("/")[0] for g in lay.gpus)) for lay in layouts}
    assert orders == set(itertools.permutations(["a", "b", "c"]))


def test_a_variant_rebuilds_its_layout(pipe):
    layout = Layout((Stage(("b/0",), 0, 10), Stage(("a/0",), 10, 25), Stage(("a/1",), 25, 40)))
    variant = variant_of(pipe, layout)
    assert variant == (1, ("b", "a"), (10, 15, 15))
    assert layout_of_variant(pipe, ["a/0", "a/1", "b/0"], variant) == layout
    assert layout_of_variant(pipe, ["a/0", "b/0"], variant) is None  # another group
    assert layout_of_variant(pipe, ["a/0", "a/1", "b/0"], (1, ("b", "a"), (10, 30))) is None  # stage count


def test_layout_moves_shift_swap_retp_and_keep_kv_local(pipe):
    layout = Layout((Stage(("a/0",), 0, 20), Stage(("b/0",), 20, 40)))
    moves = layout_moves(pipe, ["a/0", "b/0"], "prefill", layout, True)
    shifts = {m[2] for m in moves if m[:2] == (1, ("a", "b"))}
    # 1, 2, 4, …, 32 layers across the one boundary, each stage keeping one
    expected = {(20 - k, 20 + k) for k in (1, 2, 4, 8, 16)} | {(20 + k, 20 - k) for k in (1, 2, 4, 8, 16)}
    assert expected <= shifts
    assert (1, ("b", "a"), (20, 20)) in moves  # the nodes swapped, each keeping its layers
    local = [m for m in moves if m[1] == ("a", "b") and m[2][0] > 30]  # a's stage takes what memory allows
    assert local
    assert (1, ("a", "b"), (20, 20)) not in moves  # the layout itself is not a move


def test_halves_split_odd_groups_too(pipe, write_yaml, catalog):
    text = PIPE.replace("{name: a, gpu: L4, count: 2", "{name: a, gpu: L4, count: 3")
    three = load_cluster(write_yaml(text), catalog)
    scorer = Scorer(three, launchable=True, objective="throughput")
    assert halves(scorer, ("a/0", "a/1", "a/2")) == [(("a/0",), ("a/1", "a/2"))]
    assert sorted(halves(scorer, ("c/0", "c/1"))) == [(("c/0",), ("c/1",))]
    assert halves(scorer, ("a/0", "b/0")) == [(("a/0",), ("b/0",))]


def test_a_layout_move_is_scored_by_the_plans_flow(pipe):
    scorer = Scorer(pipe, launchable=True, objective="throughput")
    state = canonical([(("a/0", "b/0"), "prefill"), (("c/0", "c/1"), "decode")])
    moves = [m for m in candidate_moves(scorer, state, "kv_transfer", np.random.default_rng(0)) if m.added[0][2]]
    assert moves and all(m.priority <= 1 for m in moves)  # KV-bound: layout moves come first
    for move in moves[:5]:
        after = move.apply(state)
        live = scorer.live(after)
        assert scorer.score(after).value == pytest.approx(plan_flow(pipe, live, launchable=True).value, rel=1e-9)


def test_recruit_puts_gpus_without_requests_to_work(write_yaml, catalog):
    text = """
model: llama-2-13b
workload: {prompt_tokens: 1024, output_tokens: 512}
nodes:
  - {name: h, gpu: H100-SXM, count: 1, nic: 100Gbps}
  - {name: r, gpu: RTX-4090, count: 2, nic: 100Gbps}
network:
  default: {bandwidth: 100Gbps, latency: 10us}
"""
    cluster = load_cluster(write_yaml(text), catalog)
    scorer = Scorer(cluster, launchable=True, objective="throughput")
    assert scorer.assessment(("r/0",), "decode") is None  # one 4090 holds no 13B replica: idle
    state = canonical([(("h/0",), "prefill"), (("r/0",), "decode"), (("r/1",), "decode")])
    assert scorer.score(state).value == 0.0
    moves = candidate_moves(scorer, state, scorer.bottleneck(state), np.random.default_rng(0))
    recruit = [m for m in moves if m.added == ((("r/0", "r/1"), "decode", ()),) and len(m.removed) == 2]
    assert len(recruit) == 1 and recruit[0].priority <= 1
    after = recruit[0].apply(state)
    assert scorer.score(after).value == pytest.approx(plan_flow(cluster, scorer.live(after), launchable=True).value)
    assert scorer.score(after).value > 0
