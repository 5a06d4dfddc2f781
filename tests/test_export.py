"""`hexplan export --to k8s|aisimulate|vllm-bench`: each export read back and checked against the plan.

k8s: the manifests validate (known kinds, names, selectors, GPU limits); read back through the contract
script's extraction (tests/vllm_contract.k8s_processes, what `make test-vllm` feeds to vLLM's parser)
every engine's argv and env equal `hexlaunch --dry-run`'s with the node names where Kubernetes has
addresses. aisimulate: AIConfigurator's estimate flags only, our figures beside them, and what it
cannot express listed. vllm-bench: the promised rates, the trace replayed at the promised mean rate.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES, ROOT
from vllm_contract import k8s_processes

from launcher.k8s import check_manifests, engine_secret_name, k8s_name
from launcher.router_config import RouterConfig
from planner.plans.schema import read_plan

# `aiconfigurator cli estimate` options we may emit, from _add_estimate_mode_arguments in
# github.com/ai-dynamo/aiconfigurator src/aiconfigurator/cli/main.py at commit 095f58a51.
ESTIMATE_FLAGS = {
    "--model-path", "--backend", "--system", "--decode-system", "--estimate-mode", "--isl", "--osl", "--tp-size",
    "--pp-size", "--batch-size", "--prefill-tp-size", "--prefill-pp-size", "--prefill-batch-size",
    "--prefill-num-workers", "--decode-tp-size", "--decode-pp-size", "--decode-batch-size", "--decode-num-workers",
}  # fmt: skip


def solved(run_cli, folder: Path, cluster: Path) -> Path:
    plan = folder / f"{cluster.stem}.plan.yaml"
    # HexGen-2's roles (prefill/decode replicas): what these export tests exercise
    args = ("-o", plan, "-q", "--time-limit", "30", "--no-verify", "--roles", "disaggregated")
    result = run_cli("solve", cluster, *args)
    assert result.exit_code == 0, result.output
    return plan


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[str, Path]:
    from conftest import _run_cli

    folder = tmp_path_factory.mktemp("export")
    names = ("paper-hetero-1", "paper-h100-homogeneous", "trace-conv")
    return {name: solved(_run_cli, folder, EXAMPLES / f"{name}.yaml") for name in names}


def dry_run(plan: Path, tmp_path: Path) -> dict:
    command = [sys.executable, "-c", "import sys; from launcher.cli import main; main(sys.argv[1:])"]
    done = subprocess.run([*command, str(plan), "--dry-run", "--format", "json", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def export_k8s(run_cli, plan: Path, out: Path, *options: str) -> str:
    result = run_cli("export", plan, "--to", "k8s", "-o", out, *options)
    assert result.exit_code == 0, result.output
    return out.read_text()


@pytest.mark.parametrize("name", ["paper-hetero-1", "trace-conv"])
def test_k8s_pods_run_the_launchers_argv_and_env(plans, run_cli, tmp_path, name) -> None:
    text = export_k8s(run_cli, plans[name], tmp_path / "k8s.yaml")
    assert check_manifests(text) == []
    dry = dry_run(plans[name], tmp_path / "state")
    exported = {r["id"]: r for r in k8s_processes(text)["replicas"]}
    assert set(exported) == {r["id"] for r in dry["replicas"]}
    for replica in dry["replicas"]:
        mine = exported[replica["id"]]
        assert (mine["role"], mine["tp"], mine["pp"]) == (replica["role"], replica["tp"], replica["pp"])
        leader = replica["processes"][0]["node"]
        for want, got in zip(replica["processes"], mine["processes"], strict=True):
            names = {"$(POD_IP)": want["node"], "$(LWS_LEADER_ADDRESS)": leader}
            assert [names.get(a, a) for a in got["argv"]] == want["argv"]
            assert {k: names.get(v, v) for k, v in got["env"].items()} == {
                k: v for k, v in want["env"].items() if k not in ("CUDA_VISIBLE_DEVICES", "VLLM_API_KEY")
            }
    secret = {"secretKeyRef": {"name": engine_secret_name("hexgen2"), "key": "key"}}
    for doc in yaml.safe_load_all(text):
        for container in _containers(doc):
            if container["name"] == "vllm":  # the deployment secret comes from a Secret, never the manifest
                assert {"name": "VLLM_API_KEY", "valueFrom": secret} in container["env"]


def test_k8s_objects_place_and_connect_the_replicas(plans, run_cli, tmp_path) -> None:
    text = export_k8s(run_cli, plans["paper-hetero-1"], tmp_path / "k8s.yaml", "--namespace", "llm", "--name", "demo")
    plan = read_plan(plans["paper-hetero-1"])
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = sorted(d["kind"] for d in docs)
    multi = sum(1 for r in plan.replicas if len({g.split("/")[0] for g in r.gpus}) > 1)
    assert kinds.count("LeaderWorkerSet") == multi and kinds.count("Deployment") == len(plan.replicas) - multi + 1
    assert kinds.count("Service") == len(plan.replicas) + 1 and kinds.count("ConfigMap") == 1
    assert {d["metadata"]["namespace"] for d in docs} == {"llm"}
    types = {g: t for r in plan.replicas for s, t in zip(r.stages, r.gpu_types, strict=True) for g in s.gpus}
    for doc in docs:
        if doc["kind"] == "LeaderWorkerSet":
            group = doc["spec"]["leaderWorkerTemplate"]
            pods = [group["leaderTemplate"], group["workerTemplate"]]
        elif doc["kind"] == "Deployment" and "router" not in doc["metadata"]["name"]:
            pods = [doc["spec"]["template"]]
        else:
            continue
        for pod in pods:
            gpus = pod["metadata"]["annotations"]["hexgen2.io/plan-gpus"].split()
            selector = pod["spec"]["nodeSelector"]
            assert selector == {"hexgen2.io/gpu": types[gpus[0]], "hexgen2.io/node": gpus[0].split("/")[0]}
            assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == len(gpus)
    config = json.loads(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["router.json"])
    services = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in docs if d["kind"] == "Service"}
    for backend in config["backends"]:
        assert backend["url"] == f"http://{k8s_name('demo', backend['id'])}:{services[k8s_name('demo', backend['id'])]}"
    assert config["engine_key_file"] == "/etc/hexgen2-engine-key/key"
    weights = RouterConfig.model_validate(config).policy().weights()
    assert sum(weights.values()) == pytest.approx(1.0)
    assert {(r.source, r.target) for r in plan.routes if r.rate_rps > 0} == {k for k in weights if k[1]}


@pytest.fixture
def three_node_cluster(write_yaml) -> Path:
    """One H100 node and two A100 nodes, one GPU each, Llama-3.1-8B: a 3-stage prefill pipeline fits."""
    spec = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    spec["nodes"] = [
        {"name": "h", "gpu": "H100-SXM", "count": 1, "nic": "100Gbps"},
        {"name": "a1", "gpu": "A100-80G", "count": 1, "nic": "100Gbps"},
        {"name": "a2", "gpu": "A100-80G", "count": 1, "nic": "100Gbps"},
        {"name": "l", "gpu": "L40", "count": 1, "nic": "100Gbps"},
        {"name": "d", "gpu": "A100-80G", "count": 1, "nic": "100Gbps"},
    ]
    spec.pop("slo", None)
    return write_yaml(yaml.safe_dump(spec))


def hand_written(cluster: Path, nodes: list[str], folder: Path) -> Path:
    stages = [{"gpus": [f"{n}/0"], "layers": [k * 32 // len(nodes), (k + 1) * 32 // len(nodes)]} for k, n in
              enumerate(nodes)]  # fmt: skip
    draft = {
        "replicas": [
            {"id": "p", "role": "prefill", "gpus": [f"{n}/0" for n in nodes], "tp": 1, "pp": len(nodes),
             "stages": stages},
            {"id": "d", "role": "decode", "gpus": ["d/0"], "tp": 1, "pp": 1,
             "stages": [{"gpus": ["d/0"], "layers": [0, 32]}]},
        ]
    }  # fmt: skip
    import planner
    from planner.plans.schema import write_plan

    plan = planner.evaluate(_write(folder / "draft.yaml", draft), planner.load_cluster(cluster))
    write_plan(plan, folder / "plan.yaml")
    return folder / "plan.yaml"


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_replica_over_three_nodes_is_one_leader_worker_set(three_node_cluster, run_cli, tmp_path) -> None:
    plan = hand_written(three_node_cluster, ["h", "a1", "a2"], tmp_path)
    text = export_k8s(run_cli, plan, tmp_path / "k8s.yaml")
    assert check_manifests(text) == []
    (lws,) = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "LeaderWorkerSet"]
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 3 and "$(LWS_WORKER_INDEX)" in group["workerTemplate"]["spec"]["containers"][0]["command"]
    affinity = group["workerTemplate"]["spec"]["affinity"]["nodeAffinity"]
    term = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["values"] == ["a1", "a2"]
    dry = {r["id"]: r for r in dry_run(plan, tmp_path / "state")["replicas"]}
    (mine,) = [r for r in k8s_processes(text)["replicas"] if r["role"] == "prefill"]
    assert [p["node_rank"] for p in mine["processes"]] == [0, 1, 2]
    for want, got in zip(dry[mine["id"]]["processes"][1:], mine["processes"][1:], strict=True):
        names = {"$(LWS_LEADER_ADDRESS)": "h", "$(POD_IP)": want["node"]}
        assert [names.get(a, a) for a in got["argv"]] == want["argv"]


def test_workers_of_two_gpu_types_are_refused(three_node_cluster, run_cli, tmp_path) -> None:
    plan = hand_written(three_node_cluster, ["h", "a1", "l"], tmp_path)
    result = run_cli("export", plan, "--to", "k8s", "-o", tmp_path / "k8s.yaml")
    assert result.exit_code == 2 and "worker ranks run on different GPU types (A100-80G, L40)" in result.stderr
    assert not (tmp_path / "k8s.yaml").exists()


def test_check_manifests_finds_what_is_wrong() -> None:
    good = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"a": "1"}}, "template": {"metadata": {"labels": {"a": "1"}},
                     "spec": {"containers": [{"name": "c", "image": "i", "command": ["v"],
                                              "ports": [{"containerPort": 80}]}]}}}}  # fmt: skip
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"selector": {"a": "1"}, "ports": [{"port": 80, "targetPort": 80}]}}  # fmt: skip
    assert check_manifests(yaml.safe_dump_all([good, service])) == []
    wrong = [
        good | {"apiVersion": "v1"},
        good | {"metadata": {"name": "Not_A_Label"}},
        {**good, "spec": {**good["spec"], "selector": {"matchLabels": {"a": "2"}}}},
        service | {"spec": {"selector": {"a": "9"}, "ports": [{"port": 80, "targetPort": 80}]}},
        service | {"spec": {"selector": {"a": "1"}, "ports": [{"port": 81, "targetPort": 81}]}},
    ]
    expected = ["is not one of", "not a DNS label", "does not select its own pod template",
                "matches no pod template", "opens port 81"]  # fmt: skip
    for doc, message in zip(wrong, expected, strict=True):
        problems = check_manifests(yaml.safe_dump_all([good, doc] if doc["kind"] == "Service" else [doc]))
        assert any(message in p for p in problems), (message, problems)


def test_k8s_names_are_dns_labels() -> None:
    assert k8s_name("hexgen2", "p-h100-0-7ffac4") == "hexgen2-p-h100-0-7ffac4"
    odd = [k8s_name("hexgen2", n) for n in ("P-Node_1.a-00ff", "p-node-1-a-00ff", "9" * 80)]
    assert len(set(odd)) == 3 and all(len(n) <= 63 and n[0].isalpha() and n == n.lower() for n in odd)


def test_a_plan_the_launcher_refuses_is_not_exported(plans, run_cli, tmp_path) -> None:
    data = yaml.safe_load(plans["paper-hetero-1"].read_text())
    data["routes"] = []  # no traffic: hexlaunch refuses this plan
    bad = _write(tmp_path / "bad.yaml", data)
    result = run_cli("export", bad, "--to", "k8s", "-o", tmp_path / "k8s.yaml")
    assert result.exit_code == 2 and f"{bad}: the plan cannot be launched" in result.stderr
    assert not (tmp_path / "k8s.yaml").exists()


def test_aisimulate_estimates_each_pool_with_upstream_flags(plans, run_cli, tmp_path) -> None:
    out = tmp_path / "aic.yaml"
    assert run_cli("export", plans["paper-h100-homogeneous"], "--to", "aisimulate", "-o", out).exit_code == 0
    doc = yaml.safe_load(out.read_text())
    plan = read_plan(plans["paper-h100-homogeneous"])
    assert doc["estimates"] and sum(len(e["replicas"]) for e in doc["estimates"]) == len(plan.replicas)
    by_id = {r.id: r for r in plan.replicas}
    for estimate in doc["estimates"]:
        replica = by_id[estimate["replicas"][0]]
        argv = estimate["argv"]
        assert argv[:3] == ["aiconfigurator", "cli", "estimate"] and estimate["system"] == "h100_sxm"
        assert {a for a in argv if a.startswith("--")} <= ESTIMATE_FLAGS
        value = dict(zip(argv[3::2], argv[4::2], strict=True))
        assert (value["--tp-size"], value["--pp-size"]) == (str(replica.tp), str(replica.pp))
        mode = {"prefill": "static_ctx", "decode": "static_gen"}[replica.role]
        assert value["--estimate-mode"] == mode and value["--model-path"] == plan.model_path
        ours = estimate["ours"].get("latency_ms", estimate["ours"].get("tpot_ms"))
        assert ours == pytest.approx(replica.latency_s * 1e3, rel=1e-3)
    if doc["disaggregated"] is not None:
        assert {a for a in doc["disaggregated"]["argv"] if a.startswith("--")} <= ESTIMATE_FLAGS


def test_aisimulate_lists_what_it_cannot_express(plans, run_cli, tmp_path) -> None:
    out = tmp_path / "aic.yaml"
    assert run_cli("export", plans["paper-hetero-1"], "--to", "aisimulate", "-o", out).exit_code == 0
    doc = yaml.safe_load(out.read_text())
    plan = read_plan(plans["paper-hetero-1"])
    mixed = [r.id for r in plan.replicas if len(set(r.gpu_types)) > 1]
    text = "\n".join(doc["not_expressible"])
    assert all(f"{rid}: pipeline stages on different GPU types" in text for rid in mixed) and mixed
    assert "no AIConfigurator system for GPU type L40" in text or "L40" not in str(plan.replicas)
    assert "github.com/ai-dynamo/aiconfigurator" in doc["format"]


def test_vllm_bench_runs_at_the_promised_rate_and_replays_the_trace(plans, run_cli, tmp_path) -> None:
    out = tmp_path / "bench.sh"
    result = run_cli("export", plans["trace-conv"], "--to", "vllm-bench", "-o", out, "--router-url", "http://r:8000")
    assert result.exit_code == 0, result.output
    plan = read_plan(plans["trace-conv"])
    runs = [shlex.split(line) for line in out.read_text().splitlines() if line.startswith("vllm bench serve")]
    assert len(runs) == 3
    values = [{a[i]: a[i + 1] for i in range(3, len(a) - 1)} for a in runs]
    promised = plan.summary.goodput_rps  # trace-conv has an SLO: the promise is its goodput
    assert [float(v["--request-rate"]) for v in values[:2]] == pytest.approx([promised, 0.8 * promised], rel=1e-5)
    assert runs[0][runs[0].index("--goodput") + 1 : runs[0].index("--goodput") + 3] == ["ttft:2000", "tpot:100"]
    assert all(v["--base-url"] == "http://r:8000" and "--save-result" in a for v, a in zip(values, runs, strict=True))
    trace = tmp_path / "bench.timed_trace.jsonl"
    assert values[2]["--dataset-name"] == "timed_trace" and values[2]["--dataset-path"] == trace.name
    entries = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(entries) == int(values[2]["--num-prompts"]) == 19366
    stamps = [e["timestamp"] for e in entries]
    assert stamps[0] == 0 and stamps == sorted(stamps)
    ids = [i for e in entries for i in e["hash_ids"]]
    assert len(ids) == len(set(ids)) and all(len(e["hash_ids"]) == math.ceil(e["input_length"] / 512) for e in entries)
    replayed_span = entries[-1]["timestamp"] * float(values[2]["--timed-trace-sec-multiplier"])
    assert len(entries) / replayed_span == pytest.approx(promised, rel=1e-3)


def test_the_contract_script_reads_a_manifest_without_vllm() -> None:
    """tests/vllm_contract.py imports vLLM only inside main(): its extraction runs in `make test`."""
    code = "import sys; sys.path.insert(0, 'tests'); import vllm_contract; print('vllm' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "False"


def _containers(doc: dict) -> list[dict]:
    if doc["kind"] == "Deployment":
        return doc["spec"]["template"]["spec"]["containers"]
    if doc["kind"] == "LeaderWorkerSet":
        template = doc["spec"]["leaderWorkerTemplate"]
        return [
            c
            for key in ("leaderTemplate", "workerTemplate")
            if key in template
            for c in template[key]["spec"]["containers"]
        ]
    return []
