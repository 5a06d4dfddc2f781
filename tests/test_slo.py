"""SLOs are part of the problem and of the plan (issue 12, point 1): cluster.yaml `workload.slo`, the solve
flags, `slo` in plan.yaml, every plan-reading command saying which SLO it used, and no default SLO."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES

from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Slo
from planner.plans.schema import plan_to_yaml, read_plan
from planner.plans.slo import SloOverride, resolve_slo

H100_8 = EXAMPLES / "paper-h100-homogeneous.yaml"  # no SLO in the file


def _with_workload(text: str, workload: str) -> str:
    return "\n".join(workload if line.startswith("workload:") else line for line in text.splitlines()) + "\n"


def test_workload_slo_is_read_with_attainment_defaulting_to_90_percent(write_yaml, catalog):
    text = _with_workload(
        (EXAMPLES / "tiny.yaml").read_text(), "workload: {prompt_tokens: 512, output_tokens: 64, slo: {ttft: 1s}}"
    )
    cluster = load_cluster(write_yaml(text), catalog)
    assert cluster.slo == Slo(ttft=1.0, tpot=None, attainment=0.9)
    assert cluster.default_objective == "goodput"


def test_no_slo_means_no_slo_and_the_throughput_objective(catalog):
    cluster = load_cluster(H100_8, catalog)
    assert cluster.slo is None and cluster.default_objective == "throughput"


def test_top_level_slo_is_refused_with_the_new_place(run_cli, write_yaml):
    path = write_yaml(H100_8.read_text() + "slo: {ttft: 2s}\n")
    result = run_cli("validate", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}: slo: SLOs are part of the workload now: move `slo:` under `workload:`" in result.stderr


@pytest.mark.parametrize(
    ("slo", "message"),
    [
        ("{attainment: 0.9}", "workload.slo: an SLO needs ttft, tpot or both"),
        ("{ttft: 1s, attainment: 1.5}", "workload.slo.attainment: Input should be less than or equal to 1"),
        ("{ttft: 1s, attainment: 0}", "workload.slo.attainment: Input should be greater than 0"),
        ("{tpot: fast}", "workload.slo.tpot: cannot read 'fast' as a duration"),
    ],
)
def test_bad_slo_fields_name_the_field(run_cli, write_yaml, slo, message):
    text = _with_workload(H100_8.read_text(), f"workload: {{prompt_tokens: 1024, output_tokens: 256, slo: {slo}}}")
    result = run_cli("validate", write_yaml(text))
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_solve_records_the_slo_of_the_flags_in_the_plan(run_cli, tmp_path):
    out = tmp_path / "plan.yaml"
    args = ("--slo-ttft", "3s", "--slo-tpot", "150ms", "--slo-attainment", "0.8", "--no-verify", "--time-limit", "20")
    result = run_cli("solve", H100_8, *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert "SLO: ttft ≤ 3s, tpot ≤ 150ms, attainment 80% (from the command line)" in result.stderr
    plan = read_plan(out)
    assert plan.slo is not None and (plan.slo.ttft_s, plan.slo.tpot_s, plan.slo.attainment) == (3.0, 0.15, 0.8)
    assert plan.summary.goodput_rps is not None and 0 < plan.summary.goodput_rps <= plan.summary.throughput_rps
    assert plan.solver.objective == "goodput"
    assert "\nslo:\n  attainment: 0.8\n  tpot_s: 0.15\n  ttft_s: 3.0\n" in out.read_text()


def test_a_plan_without_slo_has_no_slo_and_no_goodput(run_cli, tmp_path):
    out = tmp_path / "plan.yaml"
    result = run_cli("solve", H100_8, "--roles", "disaggregated", "--time-limit", "20", "-o", out)
    assert result.exit_code == 0, result.output
    assert "SLO: none given, so goodput is not defined" in result.stderr
    text = out.read_text()
    assert "slo:" not in text and "goodput" not in text and "roles:" not in text  # the first release's format
    sim = run_cli("simulate", out, "--duration", "30", "--json")
    assert sim.exit_code == 0, sim.output
    payload = json.loads(sim.stdout)
    assert payload["slo"] is None and payload["slo_attainment"] is None
    sweep = run_cli("simulate", out, "--sweep", "--duration", "30")
    assert sweep.exit_code == 2 and "goodput is not defined without an SLO" in sweep.stderr


@pytest.fixture(scope="module")
def slo_plan(tmp_path_factory):
    from conftest import _run_cli

    out = tmp_path_factory.mktemp("slo") / "plan.yaml"
    args = ("--slo-ttft", "4s", "--slo-tpot", "200ms", "--no-verify", "--time-limit", "20", "-q")
    result = _run_cli("solve", H100_8, *args, "-o", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "command",
    [("simulate", "--duration", "20"), ("evaluate",), ("check",), ("diff", "SELF")],
)
def test_plan_reading_commands_use_and_name_the_plans_slo(run_cli, slo_plan, command):
    args = [slo_plan if a == "SELF" else a for a in command[1:]]
    result = run_cli(command[0], slo_plan, *args)
    assert result.exit_code == 0, result.output
    assert f"{slo_plan}: SLO: ttft ≤ 4s, tpot ≤ 200ms, attainment 90% (from {slo_plan})" in result.stderr


def test_a_command_line_slo_overrides_the_plans_field_by_field(run_cli, slo_plan):
    result = run_cli("simulate", slo_plan, "--duration", "20", "--slo-tpot", "100ms", "--json")
    assert result.exit_code == 0, result.output
    assert "SLO: ttft ≤ 4s, tpot ≤ 100ms, attainment 90% (from the command line over" in result.stderr
    assert json.loads(result.stdout)["slo"] == {"ttft_s": 4.0, "tpot_s": 0.1, "attainment": 0.9}


def test_check_is_fresh_under_the_plans_slo_and_stale_under_another(run_cli, slo_plan):
    assert run_cli("check", slo_plan).exit_code == 0
    stale = run_cli("check", slo_plan, "--slo-ttft", "300ms", "--slo-tpot", "20ms")
    assert stale.exit_code == 1 and "goodput" in stale.stdout


def test_resolve_slo_prefers_flags_then_plan_then_cluster(catalog, slo_plan):
    tiny = load_cluster(EXAMPLES / "tiny.yaml", catalog)
    plan = read_plan(slo_plan)
    assert resolve_slo(plan, tiny)[0] == Slo(4.0, 0.2, 0.9)
    assert resolve_slo(None, tiny) == (Slo(2.0, 0.1, 0.9), f"from {tiny.source}")
    assert resolve_slo(None, tiny, SloOverride(attainment=0.95))[0] == Slo(2.0, 0.1, 0.95)
    assert resolve_slo(None, load_cluster(H100_8, catalog)) == (None, "")


def test_plan_yaml_round_trips_the_slo(slo_plan):
    plan = read_plan(slo_plan)
    assert plan_to_yaml(plan) == slo_plan.read_text()
