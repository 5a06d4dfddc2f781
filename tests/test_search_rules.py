"""scheduler.search's own rules around the phases: which replicas the deployed flow drops (idle under the flow the
objective reads) or keeps (re-planning), the time shares (read on a fake clock, so no timing assert), progress
reports, the default objective, the connector's launch rules, the alternatives a verifier re-ranks, and the
infeasible messages."""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import pytest
from builders import cluster, node, replica

from planner.errors import InfeasibleError
from planner.scheduler import search as search_module
from planner.scheduler.scoring import Scorer, canonical
from planner.scheduler.search import _moved_within_limit, deployed_flow, initial_states, search


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


@pytest.fixture()
def seventy_b():
    """Llama-3.1-70B on three 4×L40 nodes: K ∈ {1, 2, 3}, and the K = 2 state already serves."""
    return cluster(*(node(f"l{i}", "L40", 4) for i in range(3)), model="llama-3.1-70b", network=100)


def test_phases_one_and_two_get_half_of_the_time_limit(monkeypatch, seventy_b) -> None:
    """Time limit 4 s on a clock that ticks 1 s a reading: the search starts at 0, K = 1 ends at 1 s, K = 2 at 2 s,
    the half-time deadline; K = 3 is never tried, and so the search cannot call itself converged."""
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    result = search(seventy_b, seed=0, time_limit=4)
    assert result.facts.k_tried == (1, 2) and not result.facts.converged


def test_progress_reports_fractions_of_the_time_limit_and_ends_on_the_result(monkeypatch, seventy_b) -> None:
    """Clock readings: 0 (start), 1, 2, 3 (K = 1, 2, 3 tried), then a report at 4 s of 100 (one reading each)."""
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    reports = []
    result = search(seventy_b, seed=0, time_limit=100, progress=lambda f, t: reports.append((f, t)))
    fractions = [f for f, _ in reports]
    assert fractions[0] == pytest.approx(0.04) and fractions == sorted(set(fractions)) and fractions[-1] <= 1.0
    assert reports[-1][1] == result.throughput_rps > 0
    late = []
    monkeypatch.setattr(search_module, "time", SimpleNamespace(monotonic=Clock().monotonic))
    search(seventy_b, seed=0, time_limit=2, progress=lambda f, t: late.append(f))
    assert len(late) >= 2 and set(late) == {1.0}, "past the limit: reported as done, never above 1"


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
    """Six single-A100 nodes for Llama-3.1-70B (141 GB): a replica spans three nodes, so a decode replica needs PP 3,
    which KV connectors refuse; the cost model alone (connector none) takes it."""
    c = cluster(*(node(n, "A100-80G", 1) for n in "abcdef"), model="llama-3.1-70b", network=100)
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
