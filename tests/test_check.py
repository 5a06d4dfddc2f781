"""`hexplan check`: a plan is fresh (exit 0), stale (exit 1, with what changed) or invalid (exit 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from planner.errors import PlanError
from planner.inputs.problem import Cluster
from planner.plans.checks import check_plan
from planner.plans.diff import same
from planner.plans.schema import Plan, read_plan, write_plan

TINY = (Path(__file__).parent.parent / "examples" / "tiny.yaml").read_text()


@pytest.fixture(scope="module")
def plan(tiny_cluster: Cluster, hand_replica, hand_plan) -> Plan:
    c = tiny_cluster
    return hand_plan(
        c,
        hand_replica(c, "prefill", ("a100-0/0",)),
        hand_replica(c, "prefill", ("l40-0/0",), ("l40-0/1",)),
        hand_replica(c, "decode", ("a100-0/1", "a100-0/2")),
        hand_replica(c, "decode", ("l40-0/2",)),
    )


@pytest.fixture
def plan_file(plan: Plan, tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    write_plan(plan, path)
    return path


def edited(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    out = path.with_name(f"edited-{path.name}")
    out.write_text(text.replace(old, new, 1))
    return out


def test_tolerance_is_the_plan_files_precision() -> None:
    assert same(25.69741, 25.6974) and same(1234567.0, 1234568.0) and same(0.0, 1e-13)
    assert not same(25.6975, 25.6974) and not same(1.0, 1.00001) and not same("prefill", "decode")


def test_fresh_plan_exits_0(run_cli, plan_file: Path, tiny_cluster: Cluster) -> None:
    for args in ((), ("--cluster", tiny_cluster.source)):
        result = run_cli("check", plan_file, *args)
        assert result.exit_code == 0, result.output
        assert f"fresh: {plan_file} matches" in result.stdout and "no differences" in result.stdout
    honest, diff = check_plan(read_plan(plan_file), tiny_cluster)
    assert diff.empty and same(honest.summary.model_dump(), read_plan(plan_file).summary.model_dump())


def test_hand_edited_figures_are_stale(run_cli, plan_file: Path, plan: Plan) -> None:
    claimed = f"throughput_rps: {float(f'{plan.summary.throughput_rps:.6g}')!r}"
    stale = edited(plan_file, claimed, "throughput_rps: 99.0")
    result = run_cli("check", stale, "--format", "json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["state"] == "stale" and body["metrics"]["throughput_rps"]["old"] == 99.0
    assert body["metrics"]["throughput_rps"]["new"] == pytest.approx(plan.summary.throughput_rps, rel=1e-5)
    assert "stale: " in result.stderr and "recorded figures differ" in result.stderr

    capacity = next(r for r in plan.replicas if r.id.startswith("d-l40"))
    stale = edited(plan_file, f"capacity_rps: {float(f'{capacity.capacity_rps:.6g}')!r}", "capacity_rps: 1.0")
    body = json.loads(run_cli("check", stale, "-f", "json").stdout)
    assert [c["old_id"] for c in body["replicas"]["changed"]] == [capacity.id]
    assert body["replicas"]["changed"][0]["changes"] == {
        "capacity_rps": {"old": 1.0, "new": float(f"{capacity.capacity_rps:.6g}")}
    }


def test_changed_cluster_makes_the_plan_stale_and_is_named(run_cli, plan_file: Path, write_yaml) -> None:
    longer = write_yaml(TINY.replace("output_tokens: 256", "output_tokens: 300"), "longer.yaml")
    result = run_cli("check", plan_file, "--cluster", longer, "-f", "markdown")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"### hexplan check stale: {plan_file} as recorded → evaluated on {longer} now")
    assert "| metric | recorded | now | Δ | Δ% | |" in result.stdout
    assert "- note: " in result.stdout and "(the cluster changed since)" in result.stdout
    assert "| output tokens |" in result.stdout


def test_cluster_edit_that_changes_nothing_is_fresh_with_a_note(run_cli, plan_file: Path, write_yaml) -> None:
    commented = write_yaml(TINY + "# an operator's comment\n", "commented.yaml")
    result = run_cli("check", plan_file, "--cluster", commented)
    assert result.exit_code == 0, result.output
    assert "note: " in result.stdout and "sha256" in result.stdout


def test_plan_that_cannot_run_is_invalid(run_cli, plan_file: Path, write_yaml) -> None:
    no_l40 = write_yaml("\n".join(line for line in TINY.splitlines() if "name: l40-0" not in line), "no-l40.yaml")
    result = run_cli("check", plan_file, "--cluster", no_l40)
    assert result.exit_code == 2
    assert f"{plan_file} is not valid for {no_l40}: " in result.stderr and "are not in the cluster" in result.stderr

    retyped = write_yaml(TINY.replace("gpu: L40,", "gpu: A100-80G,"), "retyped.yaml")
    result = run_cli("check", plan_file, "--cluster", retyped)
    assert result.exit_code == 2
    assert re.search(r"\(d-l40-0-\w+\): planned on L40 but l40-0/\d is a A100-80G in the cluster", result.stderr)


def test_check_plan_raises_on_type_mismatch(plan: Plan, tiny_cluster: Cluster) -> None:
    wrong = plan.model_copy(update={"replicas": [plan.replicas[0].model_copy(update={"gpu_types": ["H100"]})]})
    with pytest.raises(PlanError, match=r"planned on H100 but a100-0/\d is a A100-80G"):
        check_plan(wrong, tiny_cluster)


def test_unreadable_plan_exits_2(run_cli, write_yaml) -> None:
    result = run_cli("check", write_yaml("schema_version: 1\n", "plan.yaml"))
    assert result.exit_code == 2 and "plan.yaml: " in result.stderr
