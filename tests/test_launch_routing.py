"""planner.sim.routing, the policy of the router and the simulator: choices follow the plan's flow weights,
deterministically; launcher.nodes matching."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from launcher.errors import LaunchError
from launcher.nodes import GPU_LABEL, NODE_LABEL, NodeNeed, RayNode, match_nodes
from planner.sim.routing import RouteWeight, RoutingPolicy, SmoothWeighted


def policy(seed: int = 0, limit: int = 100) -> RoutingPolicy:
    limits = dict.fromkeys(["p1", "p2", "d1", "d2", "c1"], limit)
    routes = [
        RouteWeight("p1", "d1", 3.0),
        RouteWeight("p1", "d2", 1.0),
        RouteWeight("p2", "d2", 2.0),
        RouteWeight("p2", "d1", 0.0),
    ]
    return RoutingPolicy(limits, routes, {"c1": 2.0}, seed=seed)


def test_planned_shares_sum_to_one_and_skip_zero_routes() -> None:
    shares = policy().weights()
    assert shares == pytest.approx({("p1", "d1"): 3 / 8, ("p1", "d2"): 1 / 8, ("p2", "d2"): 2 / 8, ("c1", None): 2 / 8})


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("n", [8, 200, 1001])
def test_observed_pairs_follow_weights_within_one_request_per_route(seed: int, n: int) -> None:
    chosen = policy(seed)
    counts = Counter(chosen.choose({}) for _ in range(n))
    for pair, share in chosen.weights().items():
        assert abs(counts[pair] - share * n) < 2.0, (pair, counts[pair], share * n)


def test_same_seed_same_sequence_other_seed_other_phase() -> None:
    def run(seed: int) -> list[tuple[str, str | None]]:
        chosen = policy(seed)
        return [chosen.choose({}) for _ in range(50)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_saturated_prefill_is_skipped_until_it_drains() -> None:
    chosen = policy(limit=2)
    picks = [chosen.choose({"p1": 2})[0] for _ in range(20)]
    assert "p1" not in picks
    assert chosen.choose({"p1": 2, "p2": 2, "c1": 2})[0] in {"p1", "p2", "c1"}  # all saturated: engines queue


def test_unavailable_replicas_are_skipped_and_the_rest_keep_their_proportions() -> None:
    chosen = policy()
    counts = Counter(chosen.choose({}, unavailable={"d2", "c1"}) for _ in range(400))
    assert set(counts) == {("p1", "d1"), ("p2", "d2")}  # p2 routes only to d2: its picks still go there
    assert counts[("p1", "d1")] == pytest.approx(400 * 4 / 6, abs=2)  # p1 : p2 = 4 : 2 without c1
    firsts = Counter(chosen.choose({}, unavailable={"p1"})[0] for _ in range(400))
    assert set(firsts) == {"p2", "c1"} and firsts["p2"] == pytest.approx(200, abs=2)
    # nothing left: every replica is eligible again (the caller's try then fails fast and says why)
    assert chosen.choose({}, unavailable={"p1", "p2", "c1"})[0] in {"p1", "p2", "c1"}


def test_smooth_weighted_round_robin_interleaves() -> None:
    rr = SmoothWeighted({"a": 5, "b": 1, "c": 1}, np.random.default_rng(0))
    picks = [rr.pick() for _ in range(7)]
    assert Counter(picks) == {"a": 5, "b": 1, "c": 1}
    assert "aaaaa" not in "".join(picks), "smooth: the heavy item's picks are spread out"


def test_no_traffic_is_an_error() -> None:
    with pytest.raises(ValueError, match="routes no traffic"):
        RoutingPolicy({"p": 1}, [RouteWeight("p", "d", 0.0)], {}, seed=0)


def node(name: str | None, gpu: str | None, gpus: int = 2, alive: bool = True, node_id: str = "n") -> RayNode:
    labels = {k: v for k, v in ((NODE_LABEL, name), (GPU_LABEL, gpu)) if v is not None}
    return RayNode(node_id=node_id + (name or ""), address=f"10.0.0.{gpus}", labels=labels, gpus=gpus, alive=alive)


def test_match_nodes_by_label() -> None:
    wanted = [NodeNeed("a", "A100-80G", frozenset({0, 1})), NodeNeed("b", "L40", frozenset({0}))]
    found = match_nodes(wanted, [node("b", "L40", 1), node("a", "A100-80G"), node(None, None)])
    assert {k: v.labels[NODE_LABEL] for k, v in found.items()} == {"a": "a", "b": "b"}


def test_match_nodes_lists_everything_missing() -> None:
    wanted = [
        NodeNeed("a", "A100-80G", frozenset({0, 3})),  # only 2 GPUs
        NodeNeed("b", "L40", frozenset({0})),  # labelled as another type
        NodeNeed("c", "L40", frozenset({0})),  # absent (its node is dead)
        NodeNeed("d", "L40", frozenset({0})),  # no GPU label
        NodeNeed("e", "L40", frozenset({0})),  # two nodes claim it
    ]
    available = [
        node("a", "A100-80G"),
        node("b", "A100-80G"),
        node("c", "L40", alive=False),
        node("d", None),
        node("e", "L40", node_id="x"),
        node("e", "L40", node_id="y"),
    ]
    with pytest.raises(LaunchError) as raised:
        match_nodes(wanted, available)
    text = raised.value.render()
    assert text.startswith("the Ray cluster does not hold what the plan names; nothing was started:\n")
    for line in (
        "  - a: the plan uses GPU index 3 but the Ray node has 2 GPU(s).",
        "  - b: the Ray node's hexgen2.io/gpu is A100-80G; the plan expects L40.",
        "  - c: no alive Ray node has the label hexgen2.io/node=c.",
        "  - d: the Ray node has no hexgen2.io/gpu label (the plan expects L40).",
        "  - e: 2 Ray nodes carry hexgen2.io/node=e (xe, ye).",
    ):
        assert line in text.splitlines()
    assert 'To fix: start each Ray node with --labels "hexgen2.io/node=NAME,hexgen2.io/gpu=TYPE" and its GPUs' in text
