"""Baseline planners: same Plan format, honest figures, and each one's defining restriction."""

from __future__ import annotations

import pytest
from oracles import own_route_capacity, served_rps

from planner.errors import InfeasibleError, InputError
from planner.inputs.cluster import load_cluster
from planner.plans.assemble import layout_of
from planner.plans.schema import plan_to_yaml
from planner.reference.baselines import BASELINES, baseline
from planner.scheduler.assess import assess


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_plans_have_honest_figures_and_are_deterministic(tiny_cluster, name):
    """Each replica's figures are the cost model's, the throughput is what the networkx oracle (tests/oracles.py)
    says its replicas serve, every route is within its links' capacity."""
    plan = BASELINES[name](tiny_cluster, seed=0, time_limit=30)
    assessments = {r.id: assess(tiny_cluster, r.role, layout_of(r)) for r in plan.replicas}
    for r in plan.replicas:
        assert (r.capacity_rps, r.latency_s) == (assessments[r.id].capacity_rps, assessments[r.id].latency_s)
    assert plan.summary.throughput_rps > 0
    assert plan.summary.throughput_rps == pytest.approx(served_rps(tiny_cluster, assessments.values()), rel=1e-6)
    for route in plan.routes:
        capacity = own_route_capacity(tiny_cluster, assessments[route.source], assessments[route.target])
        assert route.capacity_rps == pytest.approx(capacity) and route.rate_rps <= capacity * (1 + 1e-6)
    assert plan_to_yaml(BASELINES[name](tiny_cluster, seed=0, time_limit=30)) == plan_to_yaml(plan)
    assert plan.solver.name == f"{name}-style"


def test_distserve_is_homogeneous_and_disaggregated(tiny_cluster):
    plan = BASELINES["distserve"](tiny_cluster, seed=0, time_limit=30)
    assert len({t for r in plan.replicas for t in r.gpu_types}) == 1
    assert {r.role for r in plan.replicas} == {"prefill", "decode"}
    for role in ("prefill", "decode"):
        assert len({(r.tp, r.pp) for r in plan.replicas if r.role == role}) == 1  # uniform layouts


def test_colocated_baselines(tiny_cluster):
    hexgen = BASELINES["hexgen"](tiny_cluster, seed=0, time_limit=30)
    vllm = BASELINES["vllm"](tiny_cluster, seed=0, time_limit=30)
    for plan in (hexgen, vllm):
        assert {r.role for r in plan.replicas} == {"colocated"}
    assert all(r.pp == 1 and len({g.split("/")[0] for g in r.gpus}) == 1 for r in vllm.replicas)


def test_distserve_reports_infeasible_when_no_single_type_holds_both_phases(catalog, tiny_cluster):
    cluster = load_cluster(tiny_cluster.source.parent / "paper-hetero-1.yaml", catalog)
    with pytest.raises(InfeasibleError, match="distserve baseline finds no replica layout"):
        BASELINES["distserve"](cluster, seed=0, time_limit=30)
    hexgen = BASELINES["hexgen"](cluster, seed=0, time_limit=30)
    assert any(len(set(r.gpu_types)) > 1 for r in hexgen.replicas)  # asymmetric pipelines across GPU types


def test_unknown_baseline_is_an_input_error():
    with pytest.raises(InputError, match="unknown baseline 'vlm'; known: distserve, hexgen, vllm"):
        baseline("vlm")
