"""`hexlaunch` without Ray: --dry-run (text, JSON), refusals listed in full, errors without tracebacks, fast start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher.cli import main
from launcher.engine import EngineOptions, build_launches
from planner.plan import Plan, write_plan
from planner.spec import load_cluster

THREE_NODES = Path(__file__).resolve().parent / "fakes" / "three-nodes.yaml"


def run(*args: object) -> tuple[int, str, str]:
    """`hexlaunch ARGS` in-process through the real `main` (its error handling included)."""
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    with runner.isolation() as (out, err, _):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def plan(catalog, hand_replica, hand_plan) -> Plan:
    three = load_cluster(THREE_NODES, catalog)
    return hand_plan(
        three,
        hand_replica(three, "prefill", ["a100-0/0"]),
        hand_replica(three, "prefill", ["a100-1/0"], ["l40-0/0"], split=[14]),
        hand_replica(three, "decode", ["a100-0/1"]),
        hand_replica(three, "decode", ["l40-0/1"]),
    )


@pytest.fixture
def plan_file(plan: Plan, tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    write_plan(plan, path)
    return path


def test_dry_run_text_shows_every_process(plan: Plan, plan_file: Path, tmp_path: Path) -> None:
    code, out, err = run(plan_file, "--dry-run", "--model", "meta-llama/Llama-3.1-8B", "--state-dir", tmp_path / "s")
    assert code == 0, err
    assert out.startswith(
        f"# hexlaunch dry run of {plan_file}: model llama-3.1-8b (vllm loads meta-llama/Llama-3.1-8B)"
    )
    assert "# 4 replicas, 5 engine processes, 1 router; nothing was started." in out
    for replica in plan.replicas:
        assert f"replica {replica.id}  role={replica.role}" in out
    argv_lines = [line for line in out.splitlines() if line.startswith("    argv vllm serve meta-llama/Llama-3.1-8B")]
    assert len(argv_lines) == 5
    assert sum("--headless" in line for line in argv_lines) == 1
    assert "router hx-" in out and "http://127.0.0.1:8000" in out and "problems" not in out
    assert err == ""


def test_dry_run_json_is_the_engine_builder_output(plan: Plan, plan_file: Path, tmp_path: Path) -> None:
    code, out, _ = run(plan_file, "--dry-run", "--format", "json", "--state-dir", tmp_path, "--base-port", 9000)
    assert code == 0
    doc = json.loads(out)
    options = EngineOptions(model=plan.model_path, served_name=plan.model, api_port=9000)
    expected = {p.replica_id + f"/{p.node_rank}": p for lau in build_launches(plan, options) for p in lau.processes}
    got = {p["actor"].split("/", 1)[1]: p for r in doc["replicas"] for p in r["processes"]}
    assert got.keys() == expected.keys()
    for key, process in expected.items():
        assert got[key]["argv"] == list(process.argv) and got[key]["env"] == dict(process.env)
        assert got[key]["label_selector"] == {"hexgen2.io/node": process.node}
        assert got[key]["bundle"] == {"GPU": len(process.gpus)}
    shares = doc["router"]["traffic_shares"]
    assert sum(s["share"] for s in shares) == pytest.approx(1.0)
    rates = {(r.source, r.target): r.rate_rps for r in plan.routes if r.rate_rps > 0}
    assert {(s["first"], s["decode"]) for s in shares} == set(rates)
    assert doc["problems"] == []


def test_dry_run_of_a_plan_it_would_refuse_lists_the_problems(plan: Plan, tmp_path: Path) -> None:
    prefill = next(r for r in plan.replicas if r.pp == 2)
    bad = plan.model_copy(update={"replicas": [prefill.model_copy(update={"role": "decode"}), *plan.replicas]})
    path = tmp_path / "bad.yaml"
    write_plan(bad, path)
    code, out, _ = run(path, "--dry-run", "--state-dir", tmp_path)
    assert code == 2
    problems = out.split("problems (a launch would refuse this plan):\n")[1].splitlines()
    assert f"  - replica {prefill.id}: a decode replica with PP=2; NixlConnector needs PP=1." in problems
    assert any(p.startswith("  - GPU(s) a100-1/0, l40-0/0 appear in more than one replica") for p in problems)


def test_errors_are_one_paragraph_exit_2(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "missing.yaml", "--dry-run")
    assert code == 2 and "error: " in err and "no such file (expected a plan file)" in err and "Traceback" not in err
    (tmp_path / "junk.yaml").write_text("schema_version: 1\nmodel: x\n")
    code, _, err = run(tmp_path / "junk.yaml", "--dry-run")
    assert code == 2 and "junk.yaml" in err and "Traceback" not in err
    for command in (["status"], ["stop"], ["logs", "x"]):
        code, _, err = run(*command, "--state-dir", tmp_path)
        assert code == 2
        assert f"{tmp_path / 'state.json'}: no deployment is recorded here." in err


def test_cli_and_dry_run_import_neither_ray_nor_aiohttp(plan_file: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom launcher.cli import main\n"
        f"try:\n    main([{str(plan_file)!r}, '--dry-run', '--state-dir', {str(tmp_path)!r}])\n"
        "except SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('ray', 'aiohttp', 'vllm') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in result.stdout
