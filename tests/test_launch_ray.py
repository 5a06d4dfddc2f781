"""`hexlaunch` end to end on a 3-node fake-GPU Ray cluster with the fake vLLM engine (tests/fakes/fake_vllm.py).

`hexplan solve` (3 nodes, two GPU types) → `hexlaunch` → 200 requests through the router with the official `openai`
client → every one answered, P→D pairs as planned (±5 points), argv/env as planned → `hexlaunch stop` leaves nothing.
A hand-made plan covers a pipeline replica spanning two nodes (ranks, --headless) and a launch that fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from planner.inputs.cluster import load_cluster
from planner.plans.schema import Plan, read_plan, write_plan

pytestmark = [pytest.mark.ray, pytest.mark.slow]
FAKES = Path(__file__).resolve().parent / "fakes"
MODEL = "llama-3.1-8b"
REQUESTS = 200


def hexlaunch(*args: object, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "launcher.cli", *(str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "250"})


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports, scanning from a per-process offset (other test runs on the
    machine scan too: starting at the same port, two runs would race for the same range)."""
    offset = (os.getpid() * 7919) % 20_000
    for base in [*range(20_000 + offset, 60_000, 97), *range(20_000, 20_000 + offset, 97)]:
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port range")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pgrep(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found if int(p) != os.getpid()]


@pytest.fixture(scope="module")
def two_node_plan(catalog, hand_replica, hand_plan) -> Plan:
    """A prefill pipeline over two nodes (a100-1 then l40-0, layers 14 + 18) and one decode on a100-0."""
    three = load_cluster(FAKES / "three-nodes.yaml", catalog)
    return hand_plan(
        three,
        hand_replica(three, "prefill", ["a100-1/0"], ["l40-0/0"], split=[14]),
        hand_replica(three, "decode", ["a100-0/1"]),
    )


def start_args(plan_file: Path, state: Path, records: Path, address: str, *extra: object) -> list[object]:
    engine = f"{sys.executable} {FAKES / 'fake_vllm.py'} --record-dir {records}"
    return [
        plan_file,
        "--address",
        address,
        "--state-dir",
        state,
        "--engine-cmd",
        engine,
        "--model",
        "meta-llama/Llama-3.1-8B",
        "--health-timeout",
        60,
        *extra,
    ]


@dataclass(frozen=True)
class Deployment:
    url: str
    state: Path
    records: Path


@contextmanager
def launched(plan: Plan, tmp_path: Path, address: str) -> Iterator[Deployment]:
    """`hexlaunch` the plan with fake engines; on exit `hexlaunch stop` and check no process is left behind."""
    plan_file, state, records = tmp_path / "plan.yaml", tmp_path / "state", tmp_path / "records"
    write_plan(plan, plan_file)
    base = free_ports(len(plan.replicas) + 1)
    ports = ["--router-port", base, "--base-port", base + 1, "--side-channel-port", base + 50]
    started = hexlaunch(*start_args(plan_file, state, records, address, *ports))
    assert started.returncode == 0, started.stderr
    router_pids = pgrep(str(state / "router.json"))
    assert len(router_pids) == 1
    try:
        yield Deployment(f"http://127.0.0.1:{base}", state, records)
    finally:
        engine_pids = [s["pid"] for s in records_of(records)[0]]
        stopped = hexlaunch("stop", "--state-dir", state)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in engine_pids + router_pids if alive(pid)] == []
    assert pgrep(str(records)) == [] and pgrep(str(state)) == []
    assert not (state / "state.json").exists()


def ask(client, i: int) -> tuple[str, str]:
    """One request (a quarter streaming, half of all chat); returns (request id, answer text)."""
    request_id = f"e2e-{i:03d}"
    headers = {"X-Request-Id": request_id}
    chat, stream = i % 2 == 0, i % 4 == 1
    if chat:
        messages = [{"role": "user", "content": f"question {i}"}]
        answer = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, extra_headers=headers)
        return request_id, answer.choices[0].message.content
    if stream:
        chunks = client.completions.create(
            model=MODEL, prompt=f"prompt {i}", max_tokens=4, stream=True, extra_headers=headers
        )
        return request_id, "".join(c.choices[0].text for c in chunks)
    answer = client.completions.create(model=MODEL, prompt=f"prompt {i}", max_tokens=4, extra_headers=headers)
    return request_id, answer.choices[0].text


def send(url: str, count: int) -> dict[str, str]:
    """`count` requests through the router with the openai client, 8 at a time; request id → answer."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(lambda i: ask(client, i), range(count)))


def records_of(records: Path) -> tuple[list[dict], list[dict]]:
    """What the fake engines wrote: their start records, and every request tagged with the engine that got it."""
    starts = [json.loads(f.read_text()) for f in sorted(records.glob("start-*.json"))]
    requests = []
    for f in sorted(records.glob("requests-*.jsonl")):
        pid = int(f.stem.split("-")[1])
        engine = next(s["engine_id"] for s in starts if s["pid"] == pid)
        requests += [dict(json.loads(line), engine=engine) for line in f.open()]
    return starts, requests


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def check_engines_saw_the_plan(plan: Plan, starts: list[dict]) -> None:
    """Each engine process got the argv and env its replica's layout implies."""
    by_engine = {(s["engine_id"], s["node_rank"]): s for s in starts}
    assert len(by_engine) == len(starts) == sum(len({g.split("/")[0] for g in r.gpus}) for r in plan.replicas)
    for replica in plan.replicas:
        nodes = list(dict.fromkeys(g.split("/")[0] for g in replica.gpus))
        for rank, node in enumerate(nodes):
            start = by_engine[(replica.id, rank)]
            argv = start["argv"]
            assert argv[:2] == ["serve", "meta-llama/Llama-3.1-8B"]
            assert flag(argv, "--tensor-parallel-size") == str(replica.tp)
            assert flag(argv, "--pipeline-parallel-size") == str(replica.pp)
            assert flag(argv, "--max-num-seqs") == str(replica.engine.max_num_seqs)
            assert flag(argv, "--max-model-len") == str(replica.engine.max_model_len)
            kv = json.loads(flag(argv, "--kv-transfer-config"))
            assert kv == {
                "kv_connector": "NixlConnector",
                "engine_id": replica.id,
                "kv_role": "kv_producer" if replica.role == "prefill" else "kv_consumer",
            }
            here = [g.split("/")[1] for g in replica.gpus if g.split("/")[0] == node]
            assert start["env"]["CUDA_VISIBLE_DEVICES"] == ",".join(here)
            split = ",".join(str(s.layers[1] - s.layers[0]) for s in replica.stages)
            assert start["env"].get("VLLM_PP_LAYER_PARTITION") == (split if replica.pp > 1 else None)
            assert ("--headless" in argv) == (rank > 0)
            if len(nodes) > 1:
                assert flag(argv, "--nnodes") == str(len(nodes)) and flag(argv, "--node-rank") == str(rank)


def test_end_to_end(ray_cluster: str, run_cli, tmp_path: Path) -> None:
    args = ("-o", tmp_path / "solved.yaml", "--time-limit", 5, "--roles", "disaggregated", "--no-verify")
    solved = run_cli("solve", FAKES / "three-nodes.yaml", *args)
    assert solved.exit_code == 0, solved.output
    plan = read_plan(tmp_path / "solved.yaml")
    assert {r.role for r in plan.replicas} == {"prefill", "decode"} and len(plan.routes) > 1
    with launched(plan, tmp_path, ray_cluster) as deployment:
        answers = send(deployment.url, REQUESTS)
        decodes = {r.id for r in plan.replicas if r.role == "decode"}
        for request_id, text in answers.items():  # every answer is a decode engine's 4 tokens
            engine = text.split(":")[0].strip()
            assert engine in decodes and text == "".join(f" {engine}:{t}" for t in range(4)), (request_id, text)

        # Observed P→D pairs (from the engines' own records) match the plan's flow weights within 5 points.
        starts, requests = records_of(deployment.records)
        prefill_of = {r["request_id"]: r["engine"] for r in requests if r["kv_transfer_params"].get("do_remote_decode")}
        decode_of = {r["request_id"]: r for r in requests if r["kv_transfer_params"].get("do_remote_prefill")}
        assert set(prefill_of) == set(decode_of) == set(answers) and len(answers) == REQUESTS
        for request_id, decode in decode_of.items():
            assert decode["kv_transfer_params"]["remote_engine_id"] == prefill_of[request_id]
            assert answers[request_id].startswith(f" {decode['engine']}:")
        observed = Counter((prefill_of[r], decode_of[r]["engine"]) for r in answers)
        total = sum(route.rate_rps for route in plan.routes)
        planned = {(route.source, route.target): route.rate_rps / total for route in plan.routes}
        for pair in set(planned) | set(observed):
            assert abs(observed[pair] / REQUESTS - planned.get(pair, 0.0)) <= 0.05, (pair, observed, planned)
        check_engines_saw_the_plan(plan, starts)

        with urllib.request.urlopen(deployment.url + "/metrics") as response:
            metrics = response.read().decode().splitlines()
        counted = [line for line in metrics if line.startswith("hexgen2_router_requests_total")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == REQUESTS

        status = hexlaunch("status", "--state-dir", deployment.state)
        assert status.returncode == 0, status.stderr
        rows = [line for line in status.stdout.splitlines() if "serving" in line]
        assert len(rows) == len(plan.replicas) + 1
        assert all(any(r.id in row for row in rows) for r in plan.replicas)
        logs = hexlaunch("logs", plan.replicas[0].id, "--state-dir", deployment.state)
        assert logs.returncode == 0 and f"{plan.replicas[0].id}/0" in logs.stdout


def test_pipeline_over_two_nodes(ray_cluster: str, two_node_plan: Plan, tmp_path: Path) -> None:
    with launched(two_node_plan, tmp_path, ray_cluster) as deployment:
        answers = send(deployment.url, 8)
        decode = next(r.id for r in two_node_plan.replicas if r.role == "decode")
        assert all(text.startswith(f" {decode}:") for text in answers.values())
        starts, _ = records_of(deployment.records)
        check_engines_saw_the_plan(two_node_plan, starts)
        prefill = next(r for r in two_node_plan.replicas if r.role == "prefill")
        rank0, rank1 = sorted((s for s in starts if s["engine_id"] == prefill.id), key=lambda s: s["node_rank"])
        assert flag(rank1["argv"], "--master-addr") == flag(rank0["argv"], "--host")


def test_missing_nodes_are_all_listed_before_anything_starts(
    ray_cluster: str, catalog, hand_replica, hand_plan, write_yaml, tmp_path: Path
) -> None:
    text = (FAKES / "three-nodes.yaml").read_text()
    text = text.replace("{name: l40-0, gpu: L40, count: 2", "{name: l40-0, gpu: A100-80G, count: 4")
    extra = "  - {name: h100-9, gpu: H100-SXM, count: 1, interconnect: nvlink4, nic: 400Gbps}\nnetwork:"
    cluster = load_cluster(write_yaml(text.replace("network:", extra)), catalog)
    plan = hand_plan(
        cluster, hand_replica(cluster, "prefill", ["h100-9/0"]), hand_replica(cluster, "decode", ["l40-0/3"])
    )
    write_plan(plan, tmp_path / "plan.yaml")
    result = hexlaunch(*start_args(tmp_path / "plan.yaml", tmp_path / "state", tmp_path / "rec", ray_cluster))
    assert result.returncode == 2
    assert "the Ray cluster does not hold what the plan names; nothing was started:" in result.stderr
    assert "- h100-9: no alive Ray node has the label hexgen2.io/node=h100-9." in result.stderr
    assert "- l40-0: the Ray node's hexgen2.io/gpu is L40; the plan expects A100-80G." in result.stderr
    assert "- l40-0: the plan uses GPU index 3 but the Ray node has 2 GPU(s)." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "rec").exists() and not (tmp_path / "state" / "state.json").exists()


def test_an_engine_that_dies_fails_the_launch_and_everything_is_stopped(
    ray_cluster: str, two_node_plan: Plan, tmp_path: Path
) -> None:
    write_plan(two_node_plan, tmp_path / "plan.yaml")
    base = free_ports(3)
    state = tmp_path / "state"
    result = hexlaunch(
        *start_args(
            tmp_path / "plan.yaml",
            state,
            tmp_path / "rec",
            ray_cluster,
            "--base-port",
            base + 1,
            "--router-port",
            base,
            "--engine-arg=--no-such-flag",
        )
    )
    assert result.returncode == 2, result.stderr
    assert "exited (2) before becoming healthy. Last log lines:" in result.stderr
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "launch failed; stopping what was started" in result.stderr
    assert not (state / "state.json").exists()
    assert pgrep(str(state)) == [] and pgrep(str(tmp_path / "rec")) == []
