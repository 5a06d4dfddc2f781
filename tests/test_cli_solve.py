"""`hexplan solve` as users run it: errors (exit 2, one message, nothing overwritten) and the options
that change the plan (--objective, --slo-tpot, --connector)."""

from __future__ import annotations

import pytest
from conftest import EXAMPLES

from planner import solve
from planner.errors import PlanError
from planner.inputs.cluster import load_cluster
from planner.plans.checks import evaluate
from planner.plans.schema import read_plan, write_plan

HUGE_MODEL = """
model: llama-3.1-405b
workload: {prompt_tokens: 1024, output_tokens: 256}
nodes:
  - {name: l4-0, gpu: L4, count: 2, nic: 100Gbps}
network:
  default: {bandwidth: 100Gbps, latency: 10us}
"""
# enough memory in total (so the quick check passes), but no split gives both a prefill and a decode replica:
# qwen2.5-32b fits the four A10s only as one TP-4 group, and the RTX-4090 alone holds nothing
NO_SPLIT = """
model: qwen2.5-32b
workload: {prompt_tokens: 1024, output_tokens: 256}
nodes:
  - {name: g0, gpu: RTX-4090, count: 1, nic: 100Gbps}
  - {name: a0, gpu: A10, count: 4, nic: 100Gbps}
network:
  default: {bandwidth: 100Gbps, latency: 10us}
"""


def assert_input_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.lstrip().startswith("error: ")  # (after the transient progress bar's blank line)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_model_that_fits_nowhere(run_cli, write_yaml):
    path = write_yaml(HUGE_MODEL)
    result = run_cli("solve", path)
    assert_input_error(result, f"{path}: model llama-3.1-405b needs 812.4 GB", "all 2 GPUs together offer 43.2 GB")


def test_no_split_into_prefill_and_decode(run_cli, write_yaml):
    path = write_yaml(NO_SPLIT)
    result = run_cli("solve", path, "--time-limit", "5", "--roles", "disaggregated")
    assert_input_error(result, f"{path}: no plan serves qwen2.5-32b", "both a prefill and a decode replica")
    mixed = run_cli("solve", path, "--time-limit", "5", "--no-verify", "-q")  # mixed roles: one colocated group
    assert mixed.exit_code == 0, mixed.output
    assert "role: colocated" in mixed.stdout and "role: prefill" not in mixed.stdout


def test_bad_slo_value(run_cli):
    result = run_cli("solve", EXAMPLES / "tiny.yaml", "--slo-tpot", "fast")
    assert_input_error(result, "option --slo-tpot: cannot read 'fast' as a duration")


def test_max_moved_gpus_needs_a_baseline(run_cli):
    result = run_cli("solve", EXAMPLES / "tiny.yaml", "--max-moved-gpus", "2")
    assert_input_error(result, "option --max-moved-gpus needs --baseline")


def test_missing_cluster_file(run_cli, tmp_path):
    path = tmp_path / "nope.yaml"
    result = run_cli("solve", path)
    assert_input_error(result, f"{path}: no such file")


def test_failed_solve_leaves_the_output_untouched(run_cli, write_yaml, tmp_path):
    output = tmp_path / "plan.yaml"
    output.write_text("previous plan\n")
    result = run_cli("solve", write_yaml(HUGE_MODEL), "-o", output)
    assert result.exit_code == 2
    assert output.read_text() == "previous plan\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.yaml", "plan.yaml"]  # no temporary left behind


def test_cost_objective_is_cheaper_per_token(solved_plan):
    cluster = EXAMPLES / "tiny.yaml"
    fast = read_plan(solved_plan(cluster, "--time-limit", "10", "--objective", "goodput", "--no-verify"))
    cheap = read_plan(solved_plan(cluster, "--time-limit", "10", "--objective", "goodput_per_usd", "--no-verify"))
    assert cheap.solver.objective == "goodput_per_usd"
    assert cheap.summary.usd_per_million_output_tokens <= fast.summary.usd_per_million_output_tokens


def test_tpot_slo_bounds_every_decode_replica(solved_plan):
    cluster = EXAMPLES / "paper-hetero-1.yaml"  # its unconstrained plan decodes at ~80 ms per token
    free = read_plan(solved_plan(cluster, "--time-limit", "10", "--roles", "disaggregated"))
    assert max(r.latency_s for r in free.replicas if r.role == "decode") > 0.05, "the SLO would not bind here"
    plan = read_plan(solved_plan(cluster, "--time-limit", "10", "--slo-tpot", "50ms", "--roles", "disaggregated"))
    assert all(r.latency_s <= 0.05 for r in plan.replicas if r.role == "decode")
    assert 0 < plan.summary.tpot_s <= 0.05


@pytest.mark.parametrize("example", ["tiny.yaml", "paper-hetero-1.yaml"])
def test_connector_none_pipelines_decode_only_when_it_helps(example, solved_plan, run_cli, catalog):
    nixl = read_plan(solved_plan(EXAMPLES / example, "--time-limit", "10", "--no-verify"))
    path = solved_plan(EXAMPLES / example, "--time-limit", "10", "--connector", "none", "--no-verify")
    plan = read_plan(path)
    assert plan.solver.connector == "none"
    if any(r.role == "decode" and r.pp > 1 for r in plan.replicas):
        assert plan.summary.throughput_rps > nixl.summary.throughput_rps
        # a NIXL deployment could not launch it: evaluate refuses the same layouts under the default connector
        as_nixl = plan.model_copy(update={"solver": plan.solver.model_copy(update={"connector": "nixl"})})
        with pytest.raises(PlanError, match=r"NIXL KV transfer needs decode PP = 1|same number of GPUs on each node"):
            evaluate(as_nixl, load_cluster(EXAMPLES / example, catalog))
    result = run_cli("evaluate", path, "--cluster", EXAMPLES / example)
    assert result.exit_code == 0, result.output
    assert "note" not in result.stdout  # the recorded throughput is what evaluation gives


def test_connector_none_does_pipeline_decode_somewhere(solved_plan):
    """Guards the test above: on paper-hetero-1, a pipelined decode replica on the L40s beats every PP = 1 plan."""
    plan = read_plan(
        solved_plan(
            EXAMPLES / "paper-hetero-1.yaml", "--time-limit", "10", "--connector", "none", "--roles", "disaggregated"
        )
    )
    assert any(r.role == "decode" and r.pp > 1 for r in plan.replicas)


def test_output_is_a_readable_plan_overwriting_the_old_one(run_cli, tmp_path, tiny_cluster, solved_plan):
    output = tmp_path / "plan.yaml"
    write_plan(read_plan(solved_plan(EXAMPLES / "paper-hetero-1.yaml", "--time-limit", "10", "--no-verify")), output)
    result = run_cli("solve", EXAMPLES / "tiny.yaml", "--time-limit", "10", "--no-verify", "-o", output)
    assert result.exit_code == 0, result.output
    assert f"wrote {output}" in result.stdout
    assert read_plan(output).model == tiny_cluster.model.name


def test_mixed_roles_widen_the_search_and_never_lose_to_the_split(solved_plan):
    """Mixed roles (the default) widen the search: never worse than the disaggregated plan, recorded in the plan."""
    example = EXAMPLES / "paper-hetero-3.yaml"
    split = read_plan(solved_plan(example, "--time-limit", "10", "--roles", "disaggregated"))
    mixed = read_plan(solved_plan(example, "--time-limit", "10", "--no-verify"))
    assert not split.solver.colocated and all(r.role != "colocated" for r in split.replicas)
    assert mixed.solver.colocated and mixed.solver.roles == "mixed"
    assert mixed.summary.throughput_rps >= split.summary.throughput_rps * (1 - 1e-9)


def test_a_tpot_slo_caps_colocated_replicas(write_yaml, catalog):
    """A colocated replica's steps carry prefill chunks, so under a TPOT SLO its token budget is cut until even
    a step with a full chunk meets the SLO (latency_s is that longest step)."""
    text = (
        (EXAMPLES / "paper-h100-homogeneous.yaml")
        .read_text()
        .replace("output_tokens: 256}", "output_tokens: 256, slo: {tpot: 60ms}}")
    )
    cluster = load_cluster(write_yaml(text), catalog)
    plan = solve(cluster, seed=0, time_limit=10, roles="colocated", verify=False)
    for replica in plan.replicas:
        if replica.role != "prefill":  # prefill latency_s is a prompt's latency, not a TPOT
            assert replica.latency_s <= 0.06 * (1 + 1e-9), replica
