"""scheduler.replan's own rules, apart from the search it drives: the start state (running replicas kept in their
layout, roles the search cannot run or GPUs gone re-blocked, blocks in their most capable role), and the ladder of
moved-GPU caps with its time shares, loss threshold and fallback, read off a recording stand-in for `search`."""

from __future__ import annotations

import dataclasses

import pytest
from builders import cluster, node, replica

from planner.errors import InfeasibleError
from planner.scheduler import replan as replan_module
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.replan import baseline_state, replan
from planner.scheduler.scoring import Scorer
from planner.scheduler.search import SearchFacts, SearchResult
from planner.scheduler.stability import key_of


@pytest.fixture(scope="module")
def six():
    """Four A100s and two L40s: Llama-3.1-8B fits one GPU, so every free GPU is a block of its own."""
    return cluster(node("a", "A100-80G", 4), node("l", "L40", 2), network=100)


def test_the_start_keeps_running_layouts_and_re_blocks_the_rest(six) -> None:
    """a/0 prefill stays; a/1 ran colocated, a role this search does not have, and a/3 ran beside a GPU that is gone:
    both are free again. The L40 pair keeps its running 10 + 22 pipeline (not its default layout); free A100s start
    as decode replicas, the role in which one A100 serves more (by capacity)."""
    scorer = Scorer(six, launchable=True, objective="throughput")
    pipeline = replica(six, "prefill", ["l/0"], ["l/1"], split=[10])
    running = [
        (("a/0",), "prefill"),
        (("a/1",), "colocated"),
        (("a/3", "gone/0"), "decode"),
        (("l/1", "l/0"), "prefill", key_of(pipeline.layout)),
    ]
    start = baseline_state(six, running, scorer)
    a100 = {role: scorer.assessment(("a/2",), role).capacity_rps for role in ("prefill", "decode")}
    assert a100["decode"] > a100["prefill"]
    assert start == (
        (("a/0",), "prefill", ()),
        (("a/1",), "decode", ()),
        (("a/2",), "decode", ()),
        (("a/3",), "decode", ()),
        (("l/0", "l/1"), "prefill", (1, ("l",), (10, 22))),
    )


def test_a_running_layout_the_search_cannot_run_starts_from_the_default() -> None:
    """A two-stage decode replica ran (connector none, say); a KV connector needs decode PP = 1, so the group starts in
    its default (TP 2) layout; a group that cannot hold the model in its role is not kept at all."""
    c = cluster(node("a", "A100-80G", 2), node("l", "L40", 1), network=100)
    scorer = Scorer(c, launchable=True, objective="throughput")
    pipeline = replica(c, "decode", ["a/0"], ["a/1"])
    start = baseline_state(c, [(("a/0", "a/1"), "decode", key_of(pipeline.layout))], scorer)
    assert start == ((("a/0", "a/1"), "decode", ()), (("l/0",), "decode", ()))
    assert scorer.assessment(("a/0", "a/1"), "decode").layout.tp == 2


@pytest.mark.parametrize(("roles", "last"), [("disaggregated", "decode"), ("mixed", "colocated")])
def test_a_block_no_role_fits_starts_in_the_last_role(roles, last) -> None:
    """Llama-3.1-70B (141 GB) on one 2×L40 node (96 GB): no replica fits; the block still enters the state, in the
    last of the search's roles. A running replica on one L40 cannot hold the model: it is not kept."""
    c = cluster(node("l", "L40", 2), model="llama-3.1-70b", network=100)
    scorer = Scorer(c, launchable=True, objective="throughput", roles=roles)
    assert baseline_state(c, [], scorer) == ((("l/0", "l/1"), last, ()),)
    assert baseline_state(c, [(("l/0",), "decode")], scorer) == ((("l/0", "l/1"), last, ()),)


class Recorder:
    """Stands in for `search`: records each call and answers with the throughput `values` gives its moved-GPU cap
    (None: InfeasibleError), the free solve `free` rps."""

    def __init__(self, free: SearchResult, values: dict[int, float | None]) -> None:
        self.free, self.values, self.calls = free, values, []

    def __call__(self, cluster, **options) -> SearchResult:
        self.calls.append(options)
        if "max_moved" not in options:
            return self.free
        value = self.values.get(options["max_moved"], 0.0)
        if value is None:
            raise InfeasibleError("nothing within this cap", hint="")
        return result_of([], value, moved=options["max_moved"])


def result_of(replicas, value: float, moved: int | None = None) -> SearchResult:
    flow = dataclasses.replace(_FLOW, value=value)
    facts = SearchFacts(0, "throughput", "nixl", (), 0, True, "disaggregated", 1.0, moved)
    return SearchResult(tuple(replicas), flow, facts)


_FLOW = FlowResult(0.0, {}, {}, "none", {})


def run(monkeypatch, c, values, *, free_value=100.0, free_replicas=(), **options):
    recorder = Recorder(result_of(free_replicas, free_value), values)
    monkeypatch.setattr(replan_module, "search", recorder)
    running = [(("a/0",), "prefill"), (("a/1",), "decode")]
    return replan(c, running, time_limit=10.0, **options), recorder


def test_the_ladder_doubles_its_cap_until_every_gpu_may_move_and_shares_the_time(monkeypatch, six) -> None:
    """Six GPUs: caps 0, 2, 4, 8. Nothing keeps 95 % of the free optimum, so every cap is tried; the free solve and
    the four capped ones together use the whole time limit, the capped ones in equal shares."""
    _, recorder = run(monkeypatch, six, {})
    caps = [call.get("max_moved") for call in recorder.calls]
    assert caps == [None, 0, 2, 4, 8]
    limits = [call["time_limit"] for call in recorder.calls]
    assert sum(limits) == pytest.approx(10.0) and len(set(limits[1:])) == 1 and 0 < limits[0] < 10.0
    assert all(call["start"] == recorder.calls[1]["start"] for call in recorder.calls[1:])
    assert all(call["anchor"] == ((("a/0",), "prefill"), (("a/1",), "decode")) for call in recorder.calls[1:])


def test_a_single_gpu_cluster_still_tries_a_cap_of_two(monkeypatch) -> None:
    c = cluster(node("a", "A100-80G", 1), network=100)
    _, recorder = run(monkeypatch, c, {})
    assert [call.get("max_moved") for call in recorder.calls] == [None, 0, 2]


def test_the_first_cap_within_the_allowed_loss_wins(monkeypatch, six) -> None:
    """Free optimum 100 rps, 5 % allowed: cap 0 is infeasible, cap 2 gives 94.9 (too little), cap 4 exactly 95."""
    result, recorder = run(monkeypatch, six, {0: None, 2: 94.9, 4: 95.0, 8: 100.0})
    assert result.throughput_rps == 95.0 and result.facts.moved_gpus == 4
    assert [call.get("max_moved") for call in recorder.calls] == [None, 0, 2, 4]
    looser, _ = run(monkeypatch, six, {0: None, 2: 94.9}, max_loss=0.06)
    assert looser.facts.moved_gpus == 2


def test_a_fixed_cap_is_one_search_with_the_whole_time(monkeypatch, six) -> None:
    result, recorder = run(monkeypatch, six, {3: 50.0}, max_moved_gpus=3)
    assert [(call.get("max_moved"), call["time_limit"]) for call in recorder.calls] == [(3, 10.0)]
    assert result.throughput_rps == 50.0


def test_when_no_cap_keeps_throughput_the_free_plan_counts_what_it_moves(monkeypatch, six) -> None:
    """The free plan runs a/0 as decode and a/1 as prefill: both GPUs of the running plan move."""
    free = [replica(six, "decode", ["a/0"]), replica(six, "prefill", ["a/1"])]
    result, _ = run(monkeypatch, six, {}, free_replicas=free)
    assert result.facts.moved_gpus == 2 and result.throughput_rps == 100.0


def test_the_objective_defaults_to_the_clusters(monkeypatch) -> None:
    c = cluster(node("a", "A100-80G", 2, price=2.0), network=100, objective="cost")
    _, recorder = run(monkeypatch, c, {0: 100.0})
    assert [call["objective"] for call in recorder.calls] == ["cost", "cost"]


@pytest.mark.parametrize(("connector", "kept"), [("nixl", ()), ("none", (1, ("a",), (16, 16)))])
def test_the_start_keeps_a_running_layout_only_where_the_connector_can_run_it(monkeypatch, connector, kept) -> None:
    """A two-stage decode replica on a/0 + a/1: a KV connector needs decode PP = 1 (start from the default layout);
    connector none keeps the running pipeline."""
    c = cluster(node("a", "A100-80G", 2), network=100)
    pipeline = replica(c, "decode", ["a/0"], ["a/1"])
    recorder = Recorder(result_of([], 100.0), {0: 100.0})
    monkeypatch.setattr(replan_module, "search", recorder)
    replan(c, [(("a/0", "a/1"), "decode", key_of(pipeline.layout))], time_limit=10.0, connector=connector)
    assert recorder.calls[1]["start"] == ((("a/0", "a/1"), "decode", kept),)
