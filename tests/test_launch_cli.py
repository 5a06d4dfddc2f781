"""`hexlaunch` without Ray: --dry-run (text, JSON), refusals listed in full, errors without tracebacks, fast start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher import state as st
from launcher.cli import main
from launcher.ray_cluster import free_port
from launcher.vllm_args import EngineOptions, build_launches
from planner.inputs.cluster import load_cluster
from planner.plans.schema import Plan, write_plan

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
    deployment = st.deployment_name(tmp_path)
    for replica in doc["replicas"]:  # the names a launch gives its placement groups and actors (launcher.state)
        assert replica["placement_group"] == st.placement_group_name(deployment, replica["id"])
        ranks = [p["node_rank"] for p in replica["processes"]]
        names = [st.engine_actor_name(deployment, replica["id"], rank) for rank in ranks]
        assert [p["actor"] for p in replica["processes"]] == names
    assert doc["router"]["actor"] == st.router_actor_name(deployment)
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
    assert f"  - replica {prefill.id}: a decode replica with PP=2; NIXL KV transfer needs decode PP = 1." in problems
    assert "  - plan uses GPU(s) a100-1/0, l40-0/0 in more than one replica." in problems


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


def one_paragraph_error(code: int, err: str, *expected: str) -> None:
    assert code == 2 and err.count("error: ") == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def recorded(plan: Plan, state_dir: Path, address: str) -> st.DeploymentState:
    """A deployment state as a launch writes it (no Ray involved)."""
    replica = plan.replicas[0]
    deployment = st.deployment_name(state_dir)
    state = st.DeploymentState(
        deployment=deployment,
        address=address,
        plan_file="plan.yaml",
        replicas=[
            st.ReplicaState(
                id=replica.id,
                role=replica.role,
                url="http://127.0.0.1:1",
                nodes=["a100-0"],
                gpus=replica.gpus,
                ports=st.PortsState(api=1, side_channel=5600, side_channels=1, master=29500),
                actors=[st.engine_actor_name(deployment, replica.id, 0)],
            )
        ],
    )
    st.save(state_dir, state)
    return state


def test_a_plan_that_routes_no_traffic_is_refused_not_a_traceback(plan: Plan, tmp_path: Path) -> None:
    idle = plan.model_copy(update={"routes": [r.model_copy(update={"rate_rps": 0.0}) for r in plan.routes]})
    path = tmp_path / "idle.yaml"
    write_plan(idle, path)
    code, out, err = run(path, "--dry-run", "--state-dir", tmp_path)
    assert code == 2 and "Traceback" not in err
    assert "  - the plan routes no traffic: no P→D route and no colocated replica has a positive rate." in out
    code, _, err = run(path, "--state-dir", tmp_path)
    one_paragraph_error(code, err, f"{path}: the plan cannot be launched", "the plan routes no traffic")


def test_bad_options_are_one_paragraph_exit_2(plan_file: Path, tmp_path: Path) -> None:
    code, _, err = run(plan_file, "--dry-run", "--state-dir", tmp_path, "--engine-cmd", "python 'fake.py")
    one_paragraph_error(code, err, 'error: --engine-cmd "python \'fake.py": No closing quotation')
    code, _, err = run(plan_file, "--dry-run", "--state-dir", tmp_path, "--engine-cmd", " ")
    one_paragraph_error(code, err, "error: --engine-cmd is empty")
    code, _, err = run(plan_file, "--dry-run", "--state-dir", tmp_path, "--seed", "-1")
    assert code == 2 and "Invalid value for '--seed'" in err and "greater than or equal to 0" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"deployment": "hx-1", "addr', "the deployment state is damaged (not JSON: Unterminated string"),
        ('{"deployment": "hx-1"}', "state.json: address: Field required"),
        ("[]", "state.json: (top level): Input should be a valid dictionary"),
        ("", "the deployment state is damaged (not JSON: Expecting value"),
    ],
)
def test_a_damaged_state_file_is_named_not_a_traceback(plan: Plan, tmp_path: Path, content: str, expected: str) -> None:
    recorded(plan, tmp_path, "127.0.0.1:1")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # written atomically: no temporary left behind
    st.state_path(tmp_path).write_text(content)
    for command in (["status"], ["logs", plan.replicas[0].id], ["stop"]):
        code, _, err = run(*command, "--state-dir", tmp_path)
        one_paragraph_error(code, err, str(tmp_path / "state.json"), expected, "To fix: delete")
    assert st.state_path(tmp_path).read_text() == content


def test_an_unreachable_ray_address_is_one_paragraph(plan: Plan, plan_file: Path, tmp_path: Path, monkeypatch) -> None:
    port = free_port()  # nothing listens there: refused at once, not minutes of ray.init retries
    running, fresh = tmp_path / "running", tmp_path / "fresh"
    recorded(plan, running, f"127.0.0.1:{port}")
    expected = f"cannot reach the Ray cluster at 127.0.0.1:{port}: no answer on port {port}."
    for command in (["status"], ["logs", plan.replicas[0].id]):
        code, _, err = run(*command, "--state-dir", running)
        one_paragraph_error(code, err, expected, "To fix: check --address")
    code, _, err = run(plan_file, "--address", f"127.0.0.1:{port}", "--state-dir", fresh)
    one_paragraph_error(code, err, expected)
    assert "launch failed; stopping what was started" in err and not st.state_path(fresh).exists()
    import ray

    def refuse(**_: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    st.save(running, st.load(running).model_copy(update={"address": "auto"}))
    code, _, err = run("status", "--state-dir", running)
    one_paragraph_error(code, err, "cannot reach the Ray cluster at auto: Could not find any running Ray instance.")


def test_without_ray_installed_every_ray_command_says_how_to_get_it(
    plan: Plan, plan_file: Path, tmp_path: Path
) -> None:
    recorded(plan, tmp_path / "running", "127.0.0.1:1")
    commands = [
        [str(plan_file), "--state-dir", str(tmp_path / "new")],
        ["status", "--state-dir", str(tmp_path / "running")],
        ["logs", plan.replicas[0].id, "--state-dir", str(tmp_path / "running")],
        ["stop", "--state-dir", str(tmp_path / "running")],
    ]
    code = (
        "import sys\nsys.modules['ray'] = None  # as if the [launch] extra were not installed\n"
        "from launcher.cli import main\n"
        f"for args in {commands!r}:\n"
        "    try:\n        main(args)\n    except SystemExit as exc:\n        print('EXIT', exc.code, flush=True)\n"
    )
    env = {**os.environ, "COLUMNS": "240", "NO_COLOR": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.stdout.split("\n") == ["EXIT 2"] * len(commands) + [""], result.stderr
    assert "Traceback" not in result.stderr
    errors = result.stderr.split("error: ")[1:]
    assert len(errors) == len(commands)
    for error in errors:
        assert error.startswith("this command needs Ray, which is not installed here"), error
        assert error.rstrip().endswith("To fix: pip install 'hexgen2[launch]'"), error
    assert st.state_path(tmp_path / "running").exists()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("model_path", "--trust-remote-code", "the model path '--trust-remote-code' starts with '-'"),
        ("model_path", "meta-llama/x\nINJECTED", "the model path 'meta-llama/x\\nINJECTED' holds a control character"),
        ("model", "-m", "the model name '-m' starts with '-'"),
    ],
)
def test_plan_strings_that_would_become_flags_are_refused(
    plan: Plan, tmp_path: Path, field: str, value: str, expected: str
) -> None:
    path = tmp_path / "hostile.yaml"
    write_plan(plan.model_copy(update={field: value}), path)
    for extra in (["--dry-run"], []):
        code, out, err = run(path, *extra, "--state-dir", tmp_path / "s")
        one_paragraph_error(code, err, f"{path}: refusing values that would reach the engines' argv or env:", expected)
        assert out == "" and not (tmp_path / "s").exists()


def test_env_pass_through_and_its_refusals(plan_file: Path, tmp_path: Path) -> None:
    code, out, err = run(
        plan_file, "--dry-run", "--format", "json", "--state-dir", tmp_path, "--env", "UCX_TLS=rc,cuda"
    )
    assert code == 0, err
    envs = [p["env"] for r in json.loads(out)["replicas"] for p in r["processes"]]
    assert all(e["UCX_TLS"] == "rc,cuda" and e["VLLM_API_KEY"].startswith("<deployment secret") for e in envs)
    for bad, expected in (
        ("NOEQUALS", "--env 'NOEQUALS': expected KEY=VALUE"),
        ("CUDA_VISIBLE_DEVICES=0", "--env CUDA_VISIBLE_DEVICES: the launcher sets this variable itself"),
        ("1BAD=x", "--env '1BAD': not a variable name"),
    ):
        code, _, err = run(plan_file, "--dry-run", "--state-dir", tmp_path, "--env", bad)
        one_paragraph_error(code, err, expected)


def test_attention_backend_is_pinned_on_every_engine_unless_auto(plan_file: Path, tmp_path: Path) -> None:
    for flag, expected in (([], "FLASH_ATTN"), (["--attention-backend", "FLASHINFER"], "FLASHINFER")):
        code, out, _ = run(plan_file, "--dry-run", "--format", "json", "--state-dir", tmp_path, *flag)
        argvs = [p["argv"] for r in json.loads(out)["replicas"] for p in r["processes"]]
        assert code == 0 and all(a[a.index("--attention-backend") + 1] == expected for a in argvs)
    code, out, _ = run(
        plan_file, "--dry-run", "--format", "json", "--state-dir", tmp_path, "--attention-backend", "auto"
    )
    assert code == 0 and all(
        "--attention-backend" not in p["argv"] for r in json.loads(out)["replicas"] for p in r["processes"]
    )
    code, _, err = run(plan_file, "--dry-run", "--state-dir", tmp_path, "--attention-backend", "flash; rm")
    one_paragraph_error(code, err, "--attention-backend 'flash; rm': expected a vLLM name like FLASH_ATTN.")


def test_stop_never_signals_a_recorded_pid_it_cannot_prove_it_started(plan: Plan, tmp_path: Path) -> None:
    state = recorded(plan, tmp_path, f"127.0.0.1:{free_port()}")
    me = st.ProcessState(pid=os.getpid(), start_time=1, argv0="python")  # pid alive, start time wrong
    st.save(tmp_path, state.model_copy(update={"replicas": [], "local_ray": me}))
    code, _, err = run("stop", "--state-dir", tmp_path)
    assert code == 0, err
    assert f"local Ray head (pid {os.getpid()}): no longer running (not signalled)" in err
    assert not st.state_path(tmp_path).exists()
