"""Operating a deployment on the shared fake-GPU Ray cluster: doors (API key, deployment secret, private files),
an engine killed and restarted by Ray's actor restart policy, `status --format json`, and `apply` under load."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from planner.inputs.cluster import load_cluster
from planner.plans.schema import Plan, write_plan
from tests.test_launch_ray import FAKES, MODEL, alive, free_ports, hexlaunch, pgrep, records_of, start_args

pytestmark = [pytest.mark.ray, pytest.mark.slow]
KEY = "test-api-key-7"


def plan_of(catalog, hand_replica, hand_plan, *decodes: str) -> Plan:
    three = load_cluster(FAKES / "three-nodes.yaml", catalog)
    prefill = hand_replica(three, "prefill", ["a100-0/0"])
    return hand_plan(three, prefill, *(hand_replica(three, "decode", [gpu]) for gpu in decodes))


def start(plan: Plan, tmp_path: Path, address: str, *extra: object) -> tuple[str, Path, Path]:
    plan_file, state, records = tmp_path / "plan.yaml", tmp_path / "state", tmp_path / "records"
    write_plan(plan, plan_file)
    base = free_ports(20)
    ports = ["--router-port", base, "--base-port", base + 1, "--side-channel-port", base + 10]
    started = hexlaunch(*start_args(plan_file, state, records, address, *ports, *extra))
    assert started.returncode == 0, started.stderr
    return f"http://127.0.0.1:{base}", state, records


def stop_and_check_nothing_left(state: Path, records: Path) -> None:
    engine_pids = [s["pid"] for s in records_of(records)[0]]
    stopped = hexlaunch("stop", "--state-dir", state)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in engine_pids if alive(pid)] == []
    assert pgrep(str(records)) == [] and pgrep(str(state)) == []
    assert not (state / "state.json").exists() and not (state / "engine.secret").exists()


def complete(url: str, key: str | None = KEY, timeout: float = 30) -> tuple[int, dict]:
    body = json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 2}).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    request = urllib.request.Request(url + "/v1/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {"error": error.read().decode("utf-8", "replace")}


def status_json(state: Path) -> dict:
    result = hexlaunch("status", "--format", "json", "--state-dir", state)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_doors_restart_and_status(ray_cluster: str, catalog, hand_replica, hand_plan, tmp_path: Path) -> None:
    plan = plan_of(catalog, hand_replica, hand_plan, "a100-1/0", "l40-0/0")
    url, state, records = start(plan, tmp_path, ray_cluster, "--api-key", KEY, "--env", "HF_TOKEN=hf_test")
    try:
        assert complete(url, key=None)[0] == 401 and complete(url, key="wrong")[0] == 401
        status, answer = complete(url)
        assert status == 200 and answer["choices"][0]["text"]
        # the deployment secret: engines require it, the router sends it, it is in no argv
        secret = (state / "engine.secret").read_text().strip()
        starts, requests = records_of(records)
        assert {r["authorization"] for r in requests} == {f"Bearer {secret}"}
        assert all(s["env"]["VLLM_API_KEY"] == secret and s["env"]["HF_TOKEN"] == "hf_test" for s in starts)
        assert not any(secret in arg or KEY in arg for s in starts for arg in s["argv"])
        assert all(s["argv"][s["argv"].index("--attention-backend") + 1] == "FLASH_ATTN" for s in starts)
        # private files under the state directory
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
        logs = sorted((state / "logs").glob("*.log"))
        assert len(logs) == len(plan.replicas) + 1
        for path in [*logs, state / "engine.secret", state / "api.key"]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        doc = status_json(state)
        assert {r["id"]: (r["state"], r["router_view"]) for r in doc["replicas"]} == {
            **{r.id: ("serving", "up") for r in plan.replicas},
            "router": ("serving", ""),
        }

        # SIGKILL one decode engine: the router answers every request meanwhile; Ray restarts the actor,
        # which starts the engine again on the same port; the router takes it back.
        victim = next(r.id for r in plan.replicas if r.gpus == ["l40-0/0"])
        old = next(s for s in starts if s["engine_id"] == victim)
        os.kill(old["pid"], signal.SIGKILL)
        assert [complete(url)[0] for _ in range(10)] == [200] * 10
        deadline = time.monotonic() + 60
        while True:
            restarted = [s for s in records_of(records)[0] if s["engine_id"] == victim and s["pid"] != old["pid"]]
            views = {r["id"]: (r["state"], r["router_view"]) for r in status_json(state)["replicas"]}
            if restarted and views[victim] == ("serving", "up"):
                break
            assert time.monotonic() < deadline, views
            time.sleep(0.5)
        assert restarted[0]["argv"] == old["argv"]
        texts = [complete(url)[1]["choices"][0]["text"] for _ in range(12)]
        assert any(t.startswith(f" {victim}:") for t in texts)  # back in the rotation
        assert "asking Ray to restart" in hexlaunch("logs", victim, "--state-dir", state).stdout
    finally:
        stop_and_check_nothing_left(state, records)


def test_apply_a_new_plan_under_load_fails_no_request(
    ray_cluster: str, catalog, hand_replica, hand_plan, tmp_path: Path
) -> None:
    before = plan_of(catalog, hand_replica, hand_plan, "a100-0/1")
    after = plan_of(catalog, hand_replica, hand_plan, "l40-0/0", "a100-1/0")
    url, state, records = start(before, tmp_path, ray_cluster)
    outcomes: list[int] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            try:
                outcomes.append(complete(url, key=None)[0])
            except Exception as exc:  # any failure counts, and the thread goes on
                outcomes.append(-1)
                print("load request failed:", exc)

    workers = [threading.Thread(target=load) for _ in range(4)]
    try:
        for worker in workers:
            worker.start()
        write_plan(after, tmp_path / "after.yaml")
        applied = hexlaunch("apply", tmp_path / "after.yaml", "--state-dir", state)
        assert applied.returncode == 0, applied.stderr
        assert "applied" in applied.stdout and "kept 1, started 2, stopped 1 replica(s)" in applied.stdout
        time.sleep(1.0)
    finally:
        done.set()
        for worker in workers:
            worker.join(30)
    try:
        assert len(outcomes) > 20 and set(outcomes) == {200}, [o for o in outcomes if o != 200]
        new_decodes = {r.id for r in after.replicas if r.role == "decode"}
        texts = {complete(url, key=None)[1]["choices"][0]["text"].split(":")[0].strip() for _ in range(12)}
        assert texts == new_decodes
        doc = status_json(state)
        assert {r["id"] for r in doc["replicas"]} == {r.id for r in after.replicas} | {"router"}
        again = hexlaunch("apply", tmp_path / "after.yaml", "--state-dir", state)
        assert again.returncode == 0 and "nothing to change" in again.stdout
    finally:
        stop_and_check_nothing_left(state, records)


def test_nodes_without_the_pinned_vllm_are_all_listed_before_anything_starts(
    ray_cluster: str, catalog, hand_replica, hand_plan, tmp_path: Path
) -> None:
    plan = plan_of(catalog, hand_replica, hand_plan, "l40-0/0")
    write_plan(plan, tmp_path / "plan.yaml")
    state = tmp_path / "state"
    result = hexlaunch(tmp_path / "plan.yaml", "--address", ray_cluster, "--state-dir", state)  # the real `vllm`
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert "the nodes do not run the pinned engine software; nothing was started:" in text
    for node in ("a100-0", "l40-0"):
        assert f"- {node}: vllm is not installed (pinned: vllm==0.33.0)." in text
    assert not (state / "state.json").exists() and not list((state / "logs").glob("*.log"))
