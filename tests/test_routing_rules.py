"""planner.sim.routing's rules at their edges: what counts as traffic (zero and fractional weights, colocated
rates), the nginx smooth-weighted-round-robin guarantees (share within one request at every prefix, ties to the
first name, a seed-dependent phase), per-replica limits (exactly at the limit, unnamed limits, saturation and
unavailability together), and what PlannedRouting reads from a plan. Pure: no servers, milliseconds.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from planner.sim.routing import NO_TRAFFIC, PlannedRouting, RouteWeight, RoutingPolicy, SmoothWeighted


class ZeroRng:
    """A generator whose draws are all the lower bound: every initial credit is 0, so ties are certain."""

    def uniform(self, low: float, high: float) -> float:
        return low


# --- smooth weighted round robin ------------------------------------------------------------------------------------
def test_every_prefix_of_picks_is_within_one_request_of_the_weight_share() -> None:
    """The nginx scheme's bound (module docstring): after any n picks, |count − share·n| < 1 for every item."""
    weights = {"a": 5.0, "b": 2.5, "c": 1.0, "d": 0.3}
    total = sum(weights.values())
    for seed in range(6):
        rr, counts = SmoothWeighted(weights, np.random.default_rng(seed)), Counter()
        for n in range(1, 120):
            counts[rr.pick()] += 1
            assert all(abs(counts[k] - w / total * n) < 1 for k, w in weights.items()), (seed, n, counts)


def test_equal_credits_go_to_the_first_name_in_sorted_order() -> None:
    rr = SmoothWeighted({"b": 1.0, "a": 1.0}, ZeroRng())  # type: ignore[arg-type]
    assert [rr.pick() for _ in range(4)] == ["a", "b", "a", "b"]


def test_the_seed_sets_the_phase_so_routers_do_not_start_in_step() -> None:
    """Equal weights: across seeds, each item is somebody's first pick (initial credits drawn below each weight)."""
    firsts = {SmoothWeighted(dict.fromkeys("abc", 1.0), np.random.default_rng(s)).pick() for s in range(12)}
    assert firsts == {"a", "b", "c"}


def test_zero_weights_are_never_picked_and_all_zero_is_an_error() -> None:
    rr = SmoothWeighted({"a": 0.5, "z": 0.0}, np.random.default_rng(0))
    assert {rr.pick() for _ in range(10)} == {"a"}
    assert rr.pick({"z"}) == "a"  # an ineligible-only choice falls back to every item with weight
    with pytest.raises(ValueError, match=r"^smooth weighted round robin needs at least one positive weight$"):
        SmoothWeighted({"z": 0.0}, np.random.default_rng(0))


def test_eligible_restricts_the_pick_and_none_or_empty_means_all() -> None:
    rr = SmoothWeighted({"a": 1.0, "b": 1.0, "c": 1.0}, np.random.default_rng(3))
    assert {rr.pick({"b"}) for _ in range(5)} == {"b"}
    assert Counter(rr.pick({"a", "c"}) for _ in range(10)) == {"a": 5, "c": 5}
    assert Counter(rr.pick(set()) for _ in range(9)) == {"a": 3, "b": 3, "c": 3}


# --- what counts as traffic -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("routes", "colocated", "traffic"),
    [
        ([0.5], {}, True),
        ([0.0], {}, False),
        ([0.5, 0.0], {"c": 0.0}, True),
        ([], {"c": 0.5}, True),
        ([], {"c": 0.5, "e": 0.0}, True),
        ([], {"c": 0.0}, False),
        ([0.0], {"c": 0.0}, False),
    ],
)
def test_traffic_means_some_positive_rate(routes: list[float], colocated: dict[str, float], traffic: bool) -> None:
    planned = PlannedRouting(tuple(RouteWeight("p", f"d{i}", w) for i, w in enumerate(routes)), colocated, {})
    assert planned.routes_traffic is traffic
    if traffic:
        RoutingPolicy({}, planned.routes, colocated, seed=0)
    else:
        with pytest.raises(ValueError, match=f"^{re.escape(NO_TRAFFIC)}$"):
            RoutingPolicy({}, planned.routes, colocated, seed=0)


def test_fractional_weights_count_and_zero_weight_routes_are_ignored() -> None:
    """p2's only route has weight 0: p2 is no entry at all (and no error); fractional rates are traffic."""
    routes = [RouteWeight("p1", "d1", 0.25), RouteWeight("p1", "d2", 0.75), RouteWeight("p2", "d1", 0.0)]
    policy = RoutingPolicy({}, routes, {"c1": 0.5, "c2": 0.0}, seed=1)
    assert policy.weights() == {("p1", "d1"): 0.25 / 1.5, ("p1", "d2"): 0.75 / 1.5, ("c1", None): 0.5 / 1.5}
    picks = Counter(policy.choose({}) for _ in range(60))
    assert picks == {("p1", "d1"): 10, ("p1", "d2"): 30, ("c1", None): 20}


# --- limits ---------------------------------------------------------------------------------------------------------
def policy(limits: dict[str, int]) -> RoutingPolicy:
    routes = [RouteWeight("p1", "d1", 1.0), RouteWeight("p1", "d2", 1.0), RouteWeight("p2", "d1", 1.0)]
    return RoutingPolicy(limits, routes, {"c1": 1.0}, seed=5)


def test_a_replica_is_full_exactly_at_its_limit() -> None:
    chosen = policy({"p1": 3, "p2": 3, "c1": 3})
    assert {chosen.choose({"p1": 3})[0] for _ in range(20)} == {"p2", "c1"}
    assert {chosen.choose({"p1": 2})[0] for _ in range(20)} == {"p1", "p2", "c1"}
    closed = policy({"p1": 0})  # a limit of 0: full even when idle
    assert {closed.choose({})[0] for _ in range(20)} == {"p2", "c1"}


def test_a_replica_without_a_limit_never_fills_and_an_idle_one_is_not_full() -> None:
    chosen = policy({"p2": 1, "c1": 1})  # p1 names no limit; p2 and c1 are idle (absent from the counts)
    assert Counter(chosen.choose({"p1": 10**6})[0] for _ in range(40)) == {"p1": 20, "p2": 10, "c1": 10}
    assert Counter(chosen.choose({"p2": 1, "c1": 1})[0] for _ in range(5)) == {"p1": 5}


def test_saturated_and_unavailable_together() -> None:
    """Unavailable replicas are skipped first; among the rest the full ones too, unless all of the rest are full;
    decode replicas that are unavailable are skipped for the chosen prefill."""
    chosen = policy({"p1": 1, "p2": 1, "c1": 1})
    assert {chosen.choose({"p2": 1}, {"c1"}) for _ in range(10)} == {("p1", "d1"), ("p1", "d2")}
    assert {chosen.choose({"p2": 1}, {"c1", "d2"}) for _ in range(10)} == {("p1", "d1")}
    assert {chosen.choose({"p1": 1, "p2": 1}, {"c1"})[0] for _ in range(10)} == {"p1", "p2"}  # the rest all full
    assert {chosen.choose({}, {"p1", "p2", "c1", "d1", "d2"})[0] for _ in range(12)} == {"p1", "p2", "c1"}


# --- reading a plan -------------------------------------------------------------------------------------------------
def test_planned_routing_reads_routes_limits_and_colocated_rates(hand_replica, hand_plan, tiny_cluster) -> None:
    """A colocated replica weighs its goodput within the SLO when the plan has one, else its capacity; P/D
    replicas enter only through their routes; every replica's limit is its engine's max_num_seqs."""
    plan = hand_plan(
        tiny_cluster,
        hand_replica(tiny_cluster, "prefill", ["a100-0/0"]),
        hand_replica(tiny_cluster, "decode", ["a100-0/1"]),
        hand_replica(tiny_cluster, "colocated", ["l40-0/0"]),
    )
    colocated = next(r for r in plan.replicas if r.role == "colocated")
    planned = PlannedRouting.of(plan)
    assert planned.routes == tuple(RouteWeight(r.source, r.target, r.rate_rps) for r in plan.routes)
    assert planned.limits == {r.id: r.engine.max_num_seqs for r in plan.replicas}

    def with_goodput(goodput: float | None):
        return plan.model_copy(
            update={"replicas": [r.model_copy(update={"goodput_rps": goodput}) for r in plan.replicas]}
        )

    assert PlannedRouting.of(with_goodput(None)).colocated_weights == {colocated.id: colocated.capacity_rps}
    slo = with_goodput(0.125)
    assert PlannedRouting.of(slo).colocated_weights == {colocated.id: 0.125}
    shares = RoutingPolicy.for_plan(slo, seed=0).weights()
    assert {pair for pair in shares if pair[1] is None} == {(colocated.id, None)}
