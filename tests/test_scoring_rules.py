"""scheduler.scoring's rules beyond the score itself: layout variants (admissible or not, with and without an SLO),
the cheap capacity bound and the relaxed one, what each cache saves, the engines a state runs, the replicas it deploys
(however small their flow), the ranked states a verifier re-ranks, and the tie-break's cluster-size boundary."""

from __future__ import annotations

import pytest
from builders import cluster, hf_config, node, toy_gpu

from planner.scheduler import scoring
from planner.scheduler.scoring import Scorer, canonical
from planner.scheduler.stability import key_of

THROUGHPUT = {"launchable": True, "objective": "throughput"}
PD = canonical([(("a/0",), "prefill"), (("a/1",), "decode")])


def two_nodes(**options):
    return cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100, **options)


def twin_nodes():
    return cluster(node("a", "A100-80G", 2), node("b", "A100-80G", 2))


def islands():
    """a and b both linked to l, not to each other: a decode replica on b is unreachable from a prefill on a."""
    return cluster(
        node("a", "A100-80G", 2),
        node("b", "A100-80G", 2),
        node("l", "L40", 2),
        network=None,
        links=[("a", "l", 100), ("b", "l", 100)],
    )


def test_canonical_keeps_the_variant_an_item_names() -> None:
    variant = (1, ("a",), (8, 24))
    assert canonical([(("a/1", "a/0"), "prefill", variant)]) == ((("a/0", "a/1"), "prefill", variant),)


@pytest.mark.parametrize("slo", [None, "200ms"])
def test_a_variant_fixes_the_layout_it_names(slo) -> None:
    """(TP 1, node a, 8 + 24 layers): the layout built is exactly that, not the group's default 16 + 16 split; with a
    TPOT SLO it still serves within it (prefill does not decode), so it stays admissible."""
    c = two_nodes(tpot=slo) if slo else two_nodes()
    scorer = Scorer(c, launchable=True, objective="goodput" if slo else "throughput")
    group = ("a/0", "a/1")
    default = scorer.assessment(group, "prefill")
    assert [(s.layer_start, s.layer_end) for s in default.layout.stages] == [(0, 16), (16, 32)]
    fixed = scorer.assessment(group, "prefill", (1, ("a",), (8, 24)))
    assert fixed is not None and [(s.gpus, s.layer_start, s.layer_end) for s in fixed.layout.stages] == [
        (("a/0",), 0, 8),
        (("a/1",), 8, 32),
    ]
    assert fixed.capacity_rps < default.capacity_rps, "the uneven split is slower (the default is the best one)"
    assert scorer.assessment(group, "prefill", (2, ("a",), (32,))).layout.tp == 2


def test_a_variant_the_connector_cannot_run_has_no_replica() -> None:
    """A two-stage decode replica: vLLM's KV connectors need decode PP = 1, so the variant is not admissible, while
    the same split serves as a prefill pipeline and, without a connector, as a decode one."""
    c = two_nodes()
    pipeline = (1, ("a",), (16, 16))
    assert Scorer(c, launchable=True, objective="throughput").assessment(("a/0", "a/1"), "decode", pipeline) is None
    assert Scorer(c, launchable=True, objective="throughput").assessment(("a/0", "a/1"), "prefill", pipeline)
    assert Scorer(c, launchable=False, objective="throughput").assessment(("a/0", "a/1"), "decode", pipeline)


def counting(monkeypatch, name: str) -> list[int]:
    """Count calls of scoring's imported `name` (the work a cache is there to save)."""
    calls = [0]
    original = getattr(scoring, name)

    def wrapper(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(scoring, name, wrapper)
    return calls


def test_twin_groups_in_any_gpu_order_are_assessed_once(monkeypatch) -> None:
    """One layout search for the shape (node a's group, the same GPUs reversed, node b's twin group); asking again
    returns the cached replica itself."""
    calls = counting(monkeypatch, "best_assessment")
    scorer = Scorer(twin_nodes(), launchable=True, objective="throughput")
    first = scorer.assessment(("a/1", "a/0"), "decode")
    assert scorer.assessment(("a/1", "a/0"), "decode") is first
    assert scorer.assessment(("b/0", "b/1"), "decode").layout.gpus == ("b/0", "b/1")
    assert calls == [1]


def test_a_variant_of_a_twin_group_is_assessed_once(monkeypatch) -> None:
    calls = counting(monkeypatch, "assess")
    scorer = Scorer(twin_nodes(), launchable=True, objective="throughput")
    on_a = scorer.assessment(("a/0", "a/1"), "prefill", (1, ("a",), (8, 24)))
    on_b = scorer.assessment(("b/0", "b/1"), "prefill", (1, ("b",), (8, 24)))
    assert calls == [1] and on_b.layout.gpus == ("b/0", "b/1") and on_b.capacity_rps == on_a.capacity_rps


def pipelines():
    """Two 2-stage prefill pipelines over single-GPU nodes, two decode GPUs on l, 1 Gbit/s between nodes: each
    pipeline sends half its KV from each of its nodes, so routes share NIC hubs in part (what `relaxed` relaxes)."""
    nodes = [node(n, "A100-80G", 1) for n in "abxy"]
    c = cluster(*nodes, node("l", "L40", 2), network=1)
    return c, [(("a/0", "b/0"), "prefill"), (("x/0", "y/0"), "prefill"), (("l/0",), "decode"), (("l/1",), "decode")]


def test_the_relaxed_bound_is_kept_apart_from_the_score() -> None:
    c, state = pipelines()
    scorer = Scorer(c, launchable=True, objective="throughput")
    bound = scorer.bound(state)
    score = scorer.score(state).value
    assert score > 0 and bound > 1.5 * score, "hubs shared in part: the relaxed network carries more"
    assert Scorer(c, launchable=True, objective="throughput").score(state).value == score


def test_a_bound_with_nothing_to_relax_is_the_score_and_saves_its_flow(monkeypatch) -> None:
    calls = counting(monkeypatch, "replica_flow")
    scorer = Scorer(two_nodes(), launchable=True, objective="throughput")
    bound = scorer.bound(PD)
    assert calls == [1]
    assert scorer.score(PD).value == bound and calls == [1], "the score came with the bound"


def test_the_capacity_bound_answers_below_the_floor_without_a_flow(monkeypatch) -> None:
    """min(Σ prefill, Σ decode) + Σ colocated, by hand from the replicas: returned as soon as it is ≤ the floor (at
    the floor too); below it the relaxed flow is solved."""
    scorer = Scorer(islands(), launchable=True, objective="throughput", roles="mixed")
    state = [(("a/0",), "prefill"), (("l/0",), "decode"), (("b/0",), "colocated"), (("b/1",), "colocated")]
    p, d = scorer.assessment(("a/0",), "prefill"), scorer.assessment(("l/0",), "decode")
    colocated = scorer.assessment(("b/0",), "colocated").capacity_rps * 2
    capacity = min(p.capacity_rps, d.capacity_rps) + colocated
    calls = counting(monkeypatch, "replica_flow")
    assert scorer.bound(state, floor=1e9) == pytest.approx(capacity)
    assert scorer.bound(state, floor=capacity) == pytest.approx(capacity)
    assert calls == [0]
    prefill_only = [(("a/0",), "prefill"), (("b/0",), "colocated"), (("b/1",), "colocated")]
    assert scorer.bound(prefill_only, floor=1e9) == pytest.approx(colocated), "prefill alone adds nothing"
    assert calls == [0]
    assert scorer.bound(state) == pytest.approx(scorer.score(state).value)
    assert calls == [1], "below the floor: one flow, which needed no relaxing and is the score"


def test_the_score_solves_no_routes_and_details_do() -> None:
    scorer = Scorer(islands(), launchable=True, objective="throughput")
    state = [(("a/0",), "prefill"), (("l/0",), "decode")]
    assert scorer.score(state).flow.routes == {}
    p, d = (scorer.assessment(g, r).id for g, r in state)
    assert set(scorer.details(state).routes) == {(p, d)}
    assert scorer.bottleneck(state) == scorer.details(state).bottleneck == "decode", "an L40 decodes slower"


def test_an_engine_is_its_group_role_and_layout() -> None:
    scorer = Scorer(two_nodes(), launchable=True, objective="throughput")
    a = scorer.assessment(("a/0", "a/1"), "decode")
    assert scorer.engine(("a/0", "a/1"), "decode") == (("a/0", "a/1"), "decode", key_of(a.layout))
    assert scorer.engine(("a/0",), "decode", (1, ("a",), (16, 16))) == (("a/0",), "decode", None)
    anchor = [(("a/0", "a/1"), "decode", key_of(a.layout)), (("l/0", "l/1"), "prefill")]
    kept = Scorer(two_nodes(), launchable=True, objective="throughput", anchor=anchor)
    assert kept.moved_gpus([(("a/0", "a/1"), "decode"), (("l/0", "l/1"), "prefill")]) == 0


def test_a_replica_serving_a_fraction_of_a_request_per_second_is_deployed() -> None:
    """A decode GPU with 10 MB/s of memory bandwidth: the plan serves ~6e-5 requests/s, and both replicas count."""
    c = cluster(node("a", toy_gpu(bandwidth="0.01GB/s"), 2), model=hf_config(), output=4096)
    scorer = Scorer(c, launchable=True, objective="throughput")
    assert 0 < scorer.score(PD).value < 1e-3
    assert len(scorer.assessments(PD)) == 2


def test_ranked_states_are_the_best_distinct_deployments_first() -> None:
    """Islands: a decode replica on b is unreachable, so (prefill a/0, decode l/0, decode b/0) deploys what
    (prefill a/0, decode l/0) does and is listed once; a state serving nothing never is."""
    scorer = Scorer(islands(), launchable=True, objective="throughput", roles="mixed")
    pd = canonical([(("a/0",), "prefill"), (("l/0",), "decode")])
    pd_idle = canonical([*pd, (("b/0",), "decode")])
    pdd = canonical([*pd, (("l/1",), "decode")])
    colocated = canonical([(("a/0",), "colocated")])
    mixed = canonical([*pd, (("b/0",), "colocated")])
    nothing = canonical([(("a/0",), "prefill")])
    for state in (nothing, colocated, pd_idle, pd, pdd, mixed):
        scorer.score(state)
    # scores (rps): mixed 19.4 (pd + a colocated A100) > pdd 15.8 (a second L40 decoder) > pd 10.1 > colocated 9.2
    assert scorer.ranked_states(10) == [mixed, pdd, pd, colocated]
    assert scorer.ranked_states(2) == [mixed, pdd]
    assert scorer.ranked_states(10, disaggregated=True) == [pdd, pd]


def test_ranked_states_leave_out_states_over_the_moved_gpu_cap() -> None:
    anchor = [(("a/0",), "prefill"), (("l/0",), "decode")]
    scorer = Scorer(islands(), launchable=True, objective="throughput", anchor=anchor, max_moved=0)
    kept, moved = canonical(anchor), canonical([(("a/0",), "decode"), (("l/0",), "prefill")])
    assert scorer.score(moved).value == -1.0 and scorer.assessments(moved) and scorer.score(kept).value > 0
    assert scorer.ranked_states(5) == [kept]


@pytest.mark.parametrize(("extra", "tie_break"), [(0, True), (1, False)])
def test_ties_are_broken_by_capacity_up_to_64_gpus(extra, tie_break) -> None:
    """8 nodes of 8 GPUs (64) break ties by Σ capacity of the replicas; one GPU more and they do not (0)."""
    nodes = [node(f"n{i}", "A100-80G", 8) for i in range(8)] + [node("x", "A100-80G", 1)] * extra
    c = cluster(*nodes)
    scorer = Scorer(c, launchable=True, objective="throughput")
    state = [(("n0/0",), "prefill"), (("n0/1",), "decode")]
    capacity = sum(scorer.assessment(g, r).capacity_rps for g, r in state)
    assert scorer.score(state).tie_break == (pytest.approx(capacity) if tie_break else 0.0)


def test_a_move_back_to_the_default_layout_is_written_as_the_default() -> None:
    """From the 8 + 24 split, shifting 8 layers lands on the group's default 16 + 16: that move is (), not a variant."""
    scorer = Scorer(two_nodes(), launchable=True, objective="throughput")
    moves = scorer.layout_moves(("a/0", "a/1"), "prefill", (1, ("a",), (8, 24)))
    assert () in moves and (1, ("a",), (16, 16)) not in moves


def test_a_variant_serving_half_a_request_per_second_within_the_slo_counts() -> None:
    """Toy GPUs with 1 GB/s of memory bandwidth, a 10 s TPOT: the TP 2 decode variant's goodput is about 0.5 rps."""
    c = cluster(node("a", toy_gpu(bandwidth="1GB/s"), 2), model=hf_config(), tpot="10s")
    found = Scorer(c, launchable=True, objective="goodput").assessment(("a/0", "a/1"), "decode", (2, ("a",), (4,)))
    assert found is not None and 0 < found.goodput_rps < 1


def test_a_scored_state_bounds_itself_by_its_score() -> None:
    c, state = pipelines()
    scorer = Scorer(c, launchable=True, objective="throughput")
    score = scorer.score(state).value
    assert scorer.bound(state) == score, "the exact score, not the looser relaxed bound"


def test_decode_alone_adds_nothing_to_the_capacity_bound() -> None:
    scorer = Scorer(islands(), launchable=True, objective="throughput", roles="mixed")
    colocated = scorer.assessment(("b/0",), "colocated").capacity_rps
    assert scorer.bound([(("l/0",), "decode"), (("b/0",), "colocated")], floor=1e9) == pytest.approx(colocated)


def test_states_of_equal_score_rank_by_size_then_by_their_items() -> None:
    """Twin nodes: prefill on a/0 or on b/0, decode on l/0, score exactly alike; a's state is listed first."""
    scorer = Scorer(cluster(node("a", "A100-80G", 1), node("b", "A100-80G", 1), node("l", "L40", 1)), **THROUGHPUT)
    on_b = canonical([(("b/0",), "prefill"), (("l/0",), "decode")])
    on_a = canonical([(("a/0",), "prefill"), (("l/0",), "decode")])
    assert scorer.score(on_b).value == scorer.score(on_a).value > 0
    assert scorer.ranked_states(2) == [on_a, on_b]
