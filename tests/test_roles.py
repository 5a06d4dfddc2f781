"""Roles (issue 12, point 4): disaggregated / colocated / mixed, chunked-prefill interference in the cost
model and the simulator, disaggregation where the SLO makes it pay, and a reason per replica."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import EXAMPLES

import planner
from planner.costs.chunked import mixed_step_time
from planner.costs.layout import Layout, Stage
from planner.costs.replica import decode_step_time, prefill_batch_time
from planner.errors import InfeasibleError
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Slo
from planner.plans.schema import read_plan

TIGHT = EXAMPLES / "slo-tight.yaml"


@pytest.fixture(scope="module")
def tight(catalog):
    return load_cluster(TIGHT, catalog)


def _roles(plan) -> set[str]:
    return {r.role for r in plan.replicas}


def test_a_tight_slo_disaggregates_and_a_loose_one_colocates(tight):
    split = planner.solve(tight, time_limit=20, verify=False)
    assert _roles(split) == {"prefill", "decode"}, [r.id for r in split.replicas]
    loose = planner.solve(dataclasses.replace(tight, slo=Slo(2.0, 0.1)), time_limit=20, verify=False)
    assert _roles(loose) == {"colocated"}
    assert loose.summary.goodput_rps > split.summary.goodput_rps  # the tight SLO costs rate


def test_every_replica_says_why_it_has_its_role(tight):
    plan = planner.solve(tight, time_limit=20, verify=False)
    for r in plan.replicas:
        assert r.reason and r.reason.startswith(f"{r.role}: ")
    decode = next(r for r in plan.replicas if r.role == "decode")
    assert "the TPOT SLO 18ms" in decode.reason and "as colocated" in decode.reason


def test_roles_modes_restrict_the_plan(tight):
    loose = dataclasses.replace(tight, slo=Slo(2.0, 0.1))
    only = planner.solve(loose, time_limit=20, verify=False, roles="colocated")
    assert _roles(only) == {"colocated"} and only.solver.roles == "colocated"
    split = planner.solve(loose, time_limit=20, verify=False, roles="disaggregated")
    assert _roles(split) == {"prefill", "decode"} and split.solver.roles == "disaggregated"
    with pytest.raises(InfeasibleError, match="as a replica in any allowed role within the SLO"):
        planner.solve(tight, time_limit=20, verify=False, roles="colocated")  # no colocated engine meets it


def test_the_deprecated_colocated_flag_means_mixed(run_cli, tmp_path):
    out = tmp_path / "plan.yaml"
    result = run_cli("solve", TIGHT, "--colocated", "--no-verify", "--time-limit", "20", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    assert "--colocated is deprecated; it means --roles mixed" in result.stderr
    assert read_plan(out).solver.roles == "mixed"


def test_mixed_step_lies_between_its_parts(tiny_cluster):
    layout = Layout((Stage(("a100-0/0", "a100-0/1"), 0, 32),))
    decode = decode_step_time(tiny_cluster, layout, 64, 1152)
    for chunk in (16, 256, 2048):
        prefill, _ = prefill_batch_time(tiny_cluster, layout, [chunk])
        mixed = mixed_step_time(tiny_cluster, layout, 64, 1152, chunk, chunk * chunk)
        assert max(prefill, decode) <= mixed <= prefill + decode
    assert mixed_step_time(tiny_cluster, layout, 64, 1152, 0, 0) == decode


def test_simulated_colocated_steps_stretch_with_prefill_load(tight):
    """The simulator's colocated engine carries prefill chunks in its decode steps: more prompt traffic,
    longer steps, higher TPOT (the interference the planner scores)."""
    loose = dataclasses.replace(tight, slo=Slo(2.0, 0.1))
    plan = planner.solve(loose, time_limit=20, verify=False, roles="colocated")
    light = planner.simulate(plan, loose, rate=0.2 * plan.summary.throughput_rps, duration=60)
    heavy = planner.simulate(plan, loose, rate=0.8 * plan.summary.throughput_rps, duration=60)
    assert heavy.tpot_s["p50"] > 1.3 * light.tpot_s["p50"]
    assert heavy.slo_attainment >= 0.9 and light.slo_attainment >= 0.9


NO_INTRA_ZONE_LINK = """
model: llama-3.1-8b
workload: {prompt_tokens: 128, output_tokens: 16}
nodes:
  - {name: n0, gpu: A100-80G, count: 1, nic: 10Gbps, zone: x}
  - {name: n1, gpu: A100-80G, count: 1, nic: 10Gbps, zone: x}
  - {name: n2, gpu: A100-80G, count: 1, nic: 10Gbps}
network: {cross_zone: 10Gbps}
"""


def test_a_colocated_pipeline_over_a_missing_link_is_no_replica(write_yaml, catalog):
    """n0 and n1 share zone x, which has no link of its own (only cross_zone): a pipeline between them
    takes forever. Found by hypothesis: its capacity came out NaN and the flow LP was unbounded."""
    from planner.costs.chunked import colocated_perf

    cluster = load_cluster(write_yaml(NO_INTRA_ZONE_LINK), catalog)
    split = Layout((Stage(("n0/0",), 0, 16), Stage(("n1/0",), 16, 32)))
    assert colocated_perf(cluster, split, None) is None
    across = Layout((Stage(("n0/0",), 0, 16), Stage(("n2/0",), 16, 32)))
    assert colocated_perf(cluster, across, None) is not None  # a cross-zone hop is a link
    plan = planner.solve(cluster, time_limit=2, verify=False)
    assert plan.summary.throughput_rps > 0
