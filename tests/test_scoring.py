"""The search's scorer (scheduler.scoring): canonical states, the score cache, the layout cache by group shape (GPUs
renamed correctly), the capacity bound, the cost objective, the moved-GPU cap, the replicas a state deploys."""

from __future__ import annotations

import itertools

import pytest
from builders import cluster, node
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import served_rps

from planner.scheduler.layouts import best_assessment
from planner.scheduler.scoring import Scorer, canonical


@pytest.fixture(scope="module")
def twins():
    """Two identical nodes (same GPU type, link, NIC), a third of another type."""
    return cluster(
        node("a", "A100-80G", 2, price=2.0), node("b", "A100-80G", 2, price=2.0), node("l", "L40", 2, price=1.0)
    )


def scorer_for(c, **options) -> Scorer:
    return Scorer(c, launchable=True, objective=options.pop("objective", "throughput"), **options)


STATE = canonical([(("a/0",), "prefill"), (("l/0", "l/1"), "decode"), (("b/1",), "decode")])


def test_canonical_sorts_gpus_within_groups_and_groups_within_the_state() -> None:
    shuffled = [(("l/1", "l/0"), "decode"), (("b/1",), "decode"), (("a/0",), "prefill")]
    assert canonical(shuffled) == canonical(STATE)
    assert canonical(shuffled) == ((("a/0",), "prefill", ()), (("b/1",), "decode", ()), (("l/0", "l/1"), "decode", ()))
    assert canonical(STATE) is STATE, "a tuple is taken as canonical already"


def test_the_same_state_in_any_order_is_scored_once(twins) -> None:
    scorer = scorer_for(twins)
    first = scorer.score(STATE)
    for order in itertools.permutations(STATE):
        again = scorer.score([(tuple(reversed(g)), r) for g, r, _ in order])
        assert again is first  # the cached Score object, not a recomputation
    assert first.value == first.throughput_rps > 0


def test_score_is_the_max_flow_of_the_states_replicas(twins) -> None:
    scorer = scorer_for(twins)
    live = [scorer.assessment(g, r) for g, r, _ in STATE]
    assert all(a is not None for a in live)
    assert scorer.score(STATE).throughput_rps == pytest.approx(served_rps(twins, live), rel=1e-6)


def test_assessments_are_cached_by_group_whatever_its_gpu_order(twins) -> None:
    scorer = scorer_for(twins)
    assert scorer.assessment(("l/1", "l/0"), "decode") is scorer.assessment(("l/0", "l/1"), "decode")


@pytest.mark.parametrize("role", ["prefill", "decode", "colocated"])
def test_a_group_of_the_same_shape_reuses_the_layout_with_its_own_gpus(twins, role) -> None:
    """Node b is a copy of node a: b's group gets a's layout renamed to b's GPUs, which is what assessing b fresh
    finds (GPU for GPU, stage for stage)."""
    scorer = Scorer(twins, launchable=True, objective="throughput", roles="mixed")
    first = scorer.assessment(("a/0", "a/1"), role)
    second = scorer.assessment(("b/1", "b/0"), role)
    assert first is not None and second is not None
    assert second == best_assessment(twins, ("b/0", "b/1"), role, True)
    assert sorted(second.layout.gpus) == ["b/0", "b/1"]
    assert second.capacity_rps == first.capacity_rps and second.layout.tp == first.layout.tp


def test_a_pipeline_over_twin_nodes_is_renamed_stage_by_stage() -> None:
    """Groups spanning nodes a+x and b+y, where b, y copy a, x: b's GPUs take a's stages, y's take x's."""
    c = cluster(
        node("a", "A100-80G", 1), node("b", "A100-80G", 1), node("x", "L40", 1), node("y", "L40", 1), network=100
    )
    scorer = scorer_for(c)
    first = scorer.assessment(("a/0", "x/0"), "prefill")
    second = scorer.assessment(("y/0", "b/0"), "prefill")
    assert first is not None and second is not None and first.layout.pp == 2
    assert second == best_assessment(c, ("b/0", "y/0"), "prefill", True)
    assert [s.gpus for s in second.layout.stages] == [
        tuple(g.replace("a", "b").replace("x", "y") for g in s.gpus) for s in first.layout.stages
    ]


def test_a_group_of_another_shape_is_assessed_afresh(twins) -> None:
    scorer = scorer_for(twins)
    a100 = scorer.assessment(("a/0",), "decode")
    l40 = scorer.assessment(("l/0",), "decode")
    assert l40 == best_assessment(twins, ("l/0",), "decode", True) and l40.capacity_rps != a100.capacity_rps


def test_route_traffic_is_computed_once_per_pair_of_layouts(twins) -> None:
    from planner.scheduler.kvload import route_traffic

    scorer = scorer_for(twins)
    p, d = scorer.assessment(("a/0",), "prefill"), scorer.assessment(("l/0",), "decode")
    first = scorer.traffic(p, d)
    assert first == route_traffic(twins, p.layout, d.layout) and dict(first.shares)["I:l"] == pytest.approx(1.0)
    assert scorer.traffic(p, d) is first


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["prefill", "decode", "idle"]), min_size=6, max_size=6))
def test_the_bound_never_undercuts_the_score(roles) -> None:
    c = cluster(node("a", "A100-80G", 2), node("b", "A100-80G", 2), node("l", "L40", 2))
    scorer = Scorer(c, launchable=True, objective="throughput")
    gpus = [slot.id for slot in c.gpus]
    state = [((g,), r) for g, r in zip(gpus, roles) if r != "idle"]
    score = scorer.score(state).value
    assert scorer.bound(state) >= score * (1 - 1e-9)
    prefill = sum(a.capacity_rps for g, r in state if r == "prefill" and (a := scorer.assessment(g, r)))
    decode = sum(a.capacity_rps for g, r in state if r == "decode" and (a := scorer.assessment(g, r)))
    assert scorer.bound(state) == pytest.approx(min(prefill, decode))


def test_no_bound_for_the_cost_objective_or_under_a_moved_gpu_cap(twins) -> None:
    assert scorer_for(twins, objective="cost").bound(STATE) == float("inf")
    assert scorer_for(twins, anchor=engines(STATE), max_moved=1).bound(STATE) == float("inf")


def test_the_cost_objective_divides_by_the_price_of_the_gpus_that_serve() -> None:
    """The b/0 decode replica has no link to the prefill replica, carries no flow, and so costs nothing."""
    c = islands()
    state = ((("a/0",), "prefill"), (("b/0",), "decode"), (("l/0",), "decode"))
    throughput = scorer_for(c).score(state)
    cost = scorer_for(c, objective="cost").score(state)
    assert throughput.throughput_rps > 0 and cost.throughput_rps == pytest.approx(throughput.throughput_rps)
    assert cost.value == pytest.approx(throughput.throughput_rps / (2.0 + 1.0))  # a/0 at $2/h, l/0 at $1/h


def islands():
    """a and b both linked to l, not to each other."""
    return cluster(
        node("a", "A100-80G", 2, price=2.0),
        node("b", "A100-80G", 2, price=2.0),
        node("l", "L40", 2, price=1.0),
        network=None,
        links=[("a", "l", 100), ("b", "l", 100)],
    )


def engines(state) -> list[tuple]:
    """A running plan's engines as (GPUs, role): their layouts unknown, so only GPU sets and roles compare."""
    return [(group, role) for group, role, *_ in state]


def test_a_state_moving_more_gpus_than_allowed_scores_below_every_plan(twins) -> None:
    anchor = engines(STATE)
    moved = canonical([(("a/0",), "decode"), (("l/0", "l/1"), "decode"), (("b/1",), "prefill")])
    capped = scorer_for(twins, anchor=anchor, max_moved=1)
    assert capped.moved_gpus(moved) == 2 and capped.moved_gpus(STATE) == 0
    assert capped.score(moved).value == -1.0 and capped.score(moved).throughput_rps > 0
    assert scorer_for(twins, anchor=anchor, max_moved=2).score(moved).value == pytest.approx(
        scorer_for(twins).score(moved).value
    )


def test_a_state_deploys_the_replicas_that_carry_flow_and_kept_running_ones() -> None:
    """The b/0 decode replica cannot be reached from the prefill replica: dropped from the plan, unless the running
    plan has it (re-planning keeps it rather than restart GPUs)."""
    c = islands()
    state = canonical([(("a/0",), "prefill"), (("b/0",), "decode"), (("l/0",), "decode")])
    ids = {g: scorer_for(c).assessment(g, r).id for g, r, _ in state}
    assert {a.id for a in scorer_for(c).assessments(state)} == {ids[("a/0",)], ids[("l/0",)]}
    kept = scorer_for(c, anchor=engines(state))
    assert {a.id for a in kept.assessments(state)} == set(ids.values())
    other = scorer_for(c, anchor=[(("b/0", "b/1"), "decode")])
    assert {a.id for a in other.assessments(state)} == {ids[("a/0",)], ids[("l/0",)]}, "b/0 alone is not as it ran"
