"""scheduler.search's own rules around the phases: which replicas the deployed flow drops (idle under the flow the
objective reads) or keeps (re-planning), the time shares (read on a fake clock, so no timing assert), progress
reports, the default objective, the connector's launch rules, the alternatives a verifier re-ranks, and the
infeasible messages."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import pytest
from builders import cluster, hf_config, node, replica, toy_gpu

from planner.errors import InfeasibleError
from planner.scheduler import search as search_module
from planner.scheduler.refine import RefineResult
from planner.scheduler.scoring import Scorer, canonical
from planner.scheduler.search import _moved_within_limit, deployed_flow, initial_states, replica_bytes, search


@pytest.fixture(scope="module")
def slo_pair():
    """Two colocated A100 replicas under a 100 ms TPOT SLO; the second one's goodput is set to 0 (it serves, but
    never within the SLO), so only the flow within the SLO leaves it idle."""
    c = cluster(node("a", "A100-80G", 2), network=100, tpot="100ms")
    good = replica(c, "colocated", ["a/0"])
    late = dataclasses.replace(replica(c, "colocated", ["a/1"]), goodput_rps=0.0)
    return c, good, late


def test_the_goodput_objective_drops_a_replica_idle_within_the_slo(slo_pair) -> None:
    c, good, late = slo_pair
    kept, flow, within = deployed_flow(c, [good, late], launchable=True, keep_idle=False, goodput=True)
    assert kept == [good]
    assert flow.value == pytest.approx(good.capacity_rps), "the saturated flow is solved again without it"
    assert within.value == pytest.approx(good.goodput_rps)


def test_the_throughput_objective_keeps_a_replica_that_serves_outside_the_slo(slo_pair) -> None:
    c, good, late = slo_pair
    kept, flow, within = deployed_flow(c, [good, late], launchable=True, keep_idle=False, goodput=False)
    assert kept == [good, late] and flow.value == pytest.approx(good.capacity_rps + late.capacity_rps)
    assert within.value == pytest.approx(good.goodput_rps)


def test_re_planning_keeps_an_idle_replica(slo_pair) -> None:
    c, good, late = slo_pair
    kept, flow, _ = deployed_flow(c, [good, late], launchable=True, keep_idle=True, goodput=True)
    assert kept == [good, late] and flow.value == pytest.approx(good.capacity_rps + late.capacity_rps)


def test_a_prefill_replica_without_a_decode_peer_is_dropped_until_none_is_idle() -> None:
    """No SLO: no flow within one. The prefill replica has no decode replica to hand KV to, so it carries nothing."""
    c = cluster(node("a", "A100-80G", 2), network=100)
    colocated, prefill = replica(c, "colocated", ["a/0"]), replica(c, "prefill", ["a/1"])
    kept, flow, within = deployed_flow(c, [colocated, prefill], launchable=True, keep_idle=False)
    assert kept == [colocated] and within is None
    assert flow.value == pytest.approx(colocated.capacity_rps) and set(flow.replica_flow) == {colocated.id}


class Clock:
    """A fake monotonic clock for search.py alone: it starts at the real time and each reading is one second after
    the last (refinement reads the real clock, so its deadline is real seconds from the start)."""

    def __init__(self) -> None:
        self.now = time.monotonic() - 1.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def no_refinement(monkeypatch) -> list[float]:
    """Refinement replaced by "keep the best start, converged" (these tests are about what surrounds it); returns
    the deadlines it was given."""
    deadlines = []

    def keep(scorer, starts, rng, *, deadline, on_step):
        deadlines.append(deadline)
        return RefineResult(starts[0], 0, converged=True)

    monkeypatch.setattr(search_module, "refine", keep)
    return deadlines


@pytest.fixture()
def seventy_b():
    """Llama-3.1-70B on three 4×L40 nodes: K ∈ {1, 2, 3}, and the K = 2 state already serves."""
    return cluster(*(node(f"l{i}", "L40", 4) for i in range(3)), model="llama-3.1-70b", network=100)


def test_phases_one_and_two_get_half_of_the_time_limit(monkeypatch, seventy_b) -> None:
    """Time limit 4 s on a clock that ticks 1 s a reading: the search starts at 0, K = 1 ends at 1 s, K = 2 at 2 s,
    the half-time deadline; K = 3 is never tried, and so the search cannot call itself converged."""
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    no_refinement(monkeypatch)
    result = search(seventy_b, seed=0, time_limit=4)
    assert result.facts.k_tried == (1, 2) and not result.facts.converged


def test_progress_reports_fractions_of_the_time_limit_and_ends_on_the_result(monkeypatch, seventy_b) -> None:
    """Clock readings: 0 (start), 1, 2, 3 (K = 1, 2, 3 tried), then a report at 4 s and the last one at 5 s of 100."""
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    no_refinement(monkeypatch)
    reports = []
    result = search(seventy_b, seed=0, time_limit=100, progress=lambda f, t: reports.append((f, t)))
    assert [f for f, _ in reports] == [pytest.approx(0.04), pytest.approx(0.05)]
    assert reports[-1][1] == result.throughput_rps > 0
    late = []
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    search(seventy_b, seed=0, time_limit=3, progress=lambda f, t: late.append(f))
    assert late == [1.0, 1.0], "at 3 s and 4 s of 3: reported as done, never above 1"


def test_initial_states_hold_groups_that_fit_the_model(seventy_b) -> None:
    scorer = Scorer(seventy_b, launchable=True, objective="throughput")
    _, states, _ = initial_states(seventy_b, scorer, seed=0, deadline=time.monotonic() + 60)
    for state in states:
        assert all(len(group) >= 4 for group, *_ in state), "four 48 GB L40s hold 70B (141 GB), three never do"


def test_the_objective_defaults_to_the_clusters() -> None:
    c = cluster(node("a", "A100-80G", 2, price=2.0), network=100, objective="cost")
    assert search(c, seed=0, time_limit=10).facts.objective == "cost"
    assert search(c, seed=0, time_limit=10, objective="throughput").facts.objective == "throughput"


def test_connector_none_admits_layouts_no_connector_can_launch() -> None:
    """Four single-GPU nodes of 12 GB for Llama-3.1-8B (16 GB): a replica spans two nodes, so a decode replica needs
    PP 2, which KV connectors refuse; the cost model alone (connector none) takes it."""
    c = cluster(*(node(n, toy_gpu(memory="12GB"), 1) for n in "abcd"), network=100)
    with pytest.raises(InfeasibleError, match="as both a prefill and a decode replica"):
        search(c, seed=0, time_limit=10)
    result = search(c, seed=0, time_limit=10, connector="none")
    assert result.throughput_rps > 0 and min(a.layout.pp for a in result.replicas if a.role == "decode") >= 2


def test_alternatives_are_other_deployments_and_mixed_roles_add_a_split_one() -> None:
    c = cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100)
    assert search(c, seed=0, time_limit=10).alternatives == ()
    result = search(c, seed=0, time_limit=10, alternatives=2)
    chosen = {a.id for a in result.replicas}
    ids = [{a.id for a in alt} for alt in result.alternatives]
    assert len(ids) == 2 and chosen not in ids and ids[0] != ids[1]
    mixed = search(c, seed=0, time_limit=10, roles="mixed", alternatives=1)
    split = [alt for alt in mixed.alternatives if all(a.role != "colocated" for a in alt)]
    assert split, "with mixed roles, the best disaggregated state is among the alternatives"


def test_no_plan_without_an_slo_names_the_roles_it_needed() -> None:
    """Nothing serves (a prefill replica alone): the message says which roles, and no SLO is blamed."""
    c = cluster(node("a", "A100-80G", 1), network=100)
    scorer = Scorer(c, launchable=True, objective="throughput")
    state = canonical([(("a/0",), "prefill")])
    with pytest.raises(InfeasibleError) as split:
        _moved_within_limit(c, scorer, state, [], None, None)
    assert str(split.value).endswith("no group of these GPUs holds the model as both a prefill and a decode replica.")
    colocated = Scorer(c, launchable=True, objective="throughput", roles="colocated")
    with pytest.raises(InfeasibleError) as any_role:
        _moved_within_limit(c, colocated, canonical([(("a/0",), "colocated")]), [], None, None)
    assert str(any_role.value).endswith("holds the model as a replica in any allowed role.")


def test_the_deployed_flow_reads_saturated_capacity_unless_told_goodput(slo_pair) -> None:
    c, good, late = slo_pair
    kept, _, _ = deployed_flow(c, [good, late], launchable=True, keep_idle=False)
    assert kept == [good, late]


def test_a_goodput_search_reports_its_flow_within_the_slo() -> None:
    c = cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100, tpot="60ms")
    result = search(c, seed=0, time_limit=10, objective="goodput")
    assert 0 < result.throughput_rps == result.goodput_flow.value < result.flow.value
    saturated = search(c, seed=0, time_limit=10, objective="throughput")
    assert saturated.throughput_rps == saturated.flow.value > saturated.goodput_flow.value


def test_a_long_request_budget_is_four_requests_of_kv_on_top_of_the_weights() -> None:
    """Qwen2.5-7B (7.615e9 parameters, 28 layers, 4 KV heads of 128) with 100 000 + 1 000 token requests: KV is
    2 × 4 × 128 × 2 bytes a token a layer, and four such requests outweigh the 25 % headroom."""
    c = cluster(node("a"), prompt=100_000, output=1000, model="qwen2.5-7b")
    weights = 7_615_283_200 * 2
    assert replica_bytes(c) == pytest.approx(weights + 4 * 101_000 * 28 * (2 * 4 * 128 * 2))


def test_kernighan_lin_keeps_groups_that_hold_the_model(monkeypatch, seventy_b) -> None:
    """70B needs 176.4 GB (141 GB of weights × 1.25); an L40 offers 48 GB × 0.9 utilisation: four fall short
    (172.8 GB), five hold it (216 GB)."""
    seen = []

    def spy(cluster, groups, fits, **options):
        seen.append(fits)
        return groups

    monkeypatch.setattr(search_module, "kernighan_lin_refine", spy)
    initial_states(seventy_b, Scorer(seventy_b, launchable=True, objective="throughput"), 0, time.monotonic() + 60)
    gpus = [slot.id for slot in seventy_b.gpus]
    assert seen and seen[0](tuple(gpus[:5])) is True and seen[0](tuple(gpus[:4])) is False


def test_the_search_deadline_leaves_room_to_assemble_the_plan(monkeypatch, seventy_b) -> None:
    """Refinement gets a deadline inside the time limit, most of it (the clock: 1 s a reading, from the start)."""
    clock = Clock()
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    deadlines = no_refinement(monkeypatch)
    began = clock.now + 1
    search(seventy_b, seed=0, time_limit=100)
    assert began + 50 < deadlines[0] < began + 100


def test_a_state_serving_nothing_is_infeasible_and_a_trickle_is_not() -> None:
    c = cluster(node("a", "A100-80G", 2), network=100)
    scorer = Scorer(c, launchable=True, objective="throughput")
    idle = canonical([(("a/0",), "prefill")])
    with pytest.raises(InfeasibleError, match="no plan serves"):
        _moved_within_limit(c, scorer, idle, [replica(c, "prefill", ["a/0"])], None, None)
    slow = cluster(node("a", toy_gpu(bandwidth="0.01GB/s"), 2), model=hf_config(), output=4096)
    trickle = canonical([(("a/0",), "prefill"), (("a/1",), "decode")])
    slow_scorer = Scorer(slow, launchable=True, objective="throughput")
    assert 0 < slow_scorer.score(trickle).throughput_rps < 1e-3
    assert _moved_within_limit(slow, slow_scorer, trickle, slow_scorer.assessments(trickle), None, None) is None


def test_a_replica_without_a_flow_entry_counts_as_idle() -> None:
    """On one node the KV network is free (no flow solved): a prefill replica whose goodput is 0 leaves no prefill
    supply, so the free flow lists no entry for it; it is idle, and so then is the decode replica it fed."""
    c = cluster(node("a", "A100-80G", 2), network=100, tpot="100ms")
    late = dataclasses.replace(replica(c, "prefill", ["a/0"]), goodput_rps=0.0)
    kept, _, _ = deployed_flow(c, [late, replica(c, "decode", ["a/1"])], launchable=True, keep_idle=False, goodput=True)
    assert kept == []


def test_a_trickle_of_flow_keeps_its_replicas() -> None:
    c = cluster(node("a", toy_gpu(bandwidth="0.01GB/s"), 2), model=hf_config(), output=4096)
    replicas = [replica(c, "prefill", ["a/0"]), replica(c, "decode", ["a/1"])]
    kept, flow, _ = deployed_flow(c, replicas, launchable=True, keep_idle=False)
    assert kept == replicas and 0 < flow.value < 1e-3


def test_a_search_from_a_given_start_converges_when_refinement_does(monkeypatch) -> None:
    """Re-planning's start replaces phases 1–2, so no K is left untried: converged is refinement's own verdict."""
    c = cluster(node("a", "A100-80G", 2), network=100)
    no_refinement(monkeypatch)
    result = search(c, seed=0, time_limit=10, start=canonical([(("a/0",), "prefill"), (("a/1",), "decode")]))
    assert result.facts.converged and result.facts.k_tried == ()
