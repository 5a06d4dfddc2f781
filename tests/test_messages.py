"""Rule 6 of issue 9: every exit-2 message goes to stderr and names the file (and field or row).

Covered elsewhere: hostile files (test_hostile_files.py, including `cluster.file: .` naming the
plan), traces (test_trace.py), simulate options (test_sim_bounds.py). Here: hexlaunch --dry-run
refusals, a plan with no traffic, and values too long to echo back whole.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from test_launch_cli import run as hexlaunch  # hexlaunch in-process through the real main

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny.yaml"


def broken_plan(solved_plan, tmp_path: Path) -> Path:
    plan = yaml.safe_load(solved_plan(TINY, "--time-limit", "5", "--roles", "disaggregated").read_text())  # P and D
    decode = next(r for r in plan["replicas"] if r["role"] == "decode")
    decode["tp"] = 3  # disagrees with its stages: a launch would refuse
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_dry_run_refusals_go_to_stderr_naming_the_plan(solved_plan, tmp_path):
    path = broken_plan(solved_plan, tmp_path)
    for fmt in ("text", "json"):
        code, out, err = hexlaunch(path, "--dry-run", "--format", fmt, "--state-dir", tmp_path / "state")
        assert code == 2
        assert err.startswith(f"error: {path}: a launch would refuse this plan:"), err
        assert "tp=3" in err and "disagree with its" in err
        assert "problems" in out  # the document still lists them, for tools


def test_a_plan_without_traffic_names_the_plan(run_cli, solved_plan, tmp_path):
    plan = yaml.safe_load(solved_plan(TINY, "--time-limit", "5", "--roles", "disaggregated").read_text())  # P and D
    plan["routes"] = []
    plan["replicas"] = [r for r in plan["replicas"] if r["role"] == "prefill"]  # nobody decodes
    path = tmp_path / "idle.yaml"
    path.write_text(yaml.safe_dump(plan))
    result = run_cli("simulate", path, "--cluster", TINY, "--duration", "10")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}:") and "routes no traffic" in result.stderr


def test_long_values_are_not_echoed_whole(run_cli, tmp_path):
    cluster = yaml.safe_load(TINY.read_text())
    cluster["nodes"][0]["nic"] = "9" * 200_000
    cluster["x" * 5000] = 1
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    result = run_cli("validate", path)
    assert result.exit_code == 2
    assert f"error: {path}: nodes[0].nic: " in result.stderr
    assert len(result.stderr) < 2000, len(result.stderr)
    assert "(200,000 characters)" in result.stderr


def test_deeply_nested_json_config_is_an_input_error(run_cli, tmp_path):
    """json.loads recurses per level: 100,000 levels once escaped as a RecursionError traceback."""
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    cluster = yaml.safe_load(TINY.read_text()) | {"model": "config.json"}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    result = run_cli("validate", path)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.startswith(f"error: {path}: model: {tmp_path / 'config.json'}: the JSON is nested too deeply")


def test_a_tag_the_value_cannot_take_is_malformed_yaml(run_cli, tmp_path):
    """Found by the fuzzer: `!!float` on a word raised ValueError inside PyYAML's constructor."""
    path = tmp_path / "cluster.yaml"
    path.write_text(TINY.read_text().replace("prompt_tokens: ", "prompt_tokens: !!float many ", 1))
    result = run_cli("validate", path)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: malformed YAML: a tagged value cannot be read ("), result.stderr


def test_check_shows_a_replica_field_that_went_missing(run_cli, solved_plan, tmp_path):
    """Found by the fuzzer: a recorded replica without goodput_rps made the diff table format None."""
    path = solved_plan(TINY, "--time-limit", "5")
    plan = yaml.safe_load(path.read_text())
    assert "goodput_rps" in plan["replicas"][0]
    del plan["replicas"][0]["goodput_rps"]
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(plan))
    result = run_cli("check", edited)
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
    assert "goodput_rps — →" in result.stdout, result.stdout


def test_simulate_names_the_slo_option_as_spelled(run_cli, solved_plan):
    """simulate takes --slo-ttft and the older --ttft: the message names both (the fuzzer expected --ttft)."""
    path = solved_plan(TINY, "--time-limit", "5")
    result = run_cli("simulate", path, "--duration", "10", "--ttft", "abc")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: option --slo-ttft/--ttft: cannot read 'abc' as a duration"), result.stderr
