"""A plan as Kubernetes manifests: the engines hexlaunch would start, with the exact vLLM argv and env
the launcher builds (launcher.vllm_args.build_launches), and the router in front of them.

What each replica becomes:
- one node: a Deployment (1 pod, `Recreate`: never two engines on the replica's GPUs) and a Service;
- several nodes: a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1, one group of `size` = nodes pods; the
  leader runs node rank 0 and serves HTTP, the workers run `--headless`) and a Service on the leader.
  With one worker its template is that rank's exact argv; with more workers, which must then all be
  of one GPU type, `--node-rank` reads `$(LWS_WORKER_INDEX)` and the workers may land on any of the
  plan's nodes for those ranks (LWS gives every worker one template);
- every pod: `nodeSelector` on the labels hexlaunch matches on Ray, `hexgen2.io/gpu` = the GPU type
  key and `hexgen2.io/node` = the plan's node name (label your Kubernetes nodes with both), a limit of
  `nvidia.com/gpu` = its GPUs, /dev/shm in memory, and /health as readiness probe on the leader.
The argv and env are the launcher's, with the addresses Kubernetes knows: `$(POD_IP)` (from the
downward API) where hexlaunch puts the node's IP, `$(LWS_LEADER_ADDRESS)` for a worker's
`--master-addr`. CUDA_VISIBLE_DEVICES is left out: on Kubernetes the NVIDIA device plugin picks the
GPUs and the container sees them as 0…n-1. The router runs `hexlaunch router` on a ConfigMap holding
the config hexlaunch writes, with each engine's URL its Service; a Service `<name>-router` fronts it.
Pure: no Ray, no network; `check_manifests` validates the documents (kinds, names, selectors, GPUs).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from launcher.errors import LaunchError, listed
from launcher.nodes import GPU_LABEL, NODE_LABEL
from launcher.router_config import RouterSettings, plan_config
from launcher.vllm_args import (
    SECRET_ENV,
    EngineOptions,
    Process,
    ReplicaLaunch,
    build_launches,
    node_shares,
    ordered,
    plan_problems,
)
from planner.plans.schema import Plan, ReplicaPlan

KINDS = {"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "LeaderWorkerSet": "leaderworkerset.x-k8s.io/v1"}
POD_IP, LEADER, WORKER_INDEX = "$(POD_IP)", "$(LWS_LEADER_ADDRESS)", "$(LWS_WORKER_INDEX)"
REPLICA_LABEL, ROLE_LABEL, RANK_KEY = "hexgen2.io/replica", "hexgen2.io/role", "hexgen2.io/node-rank"
ROUTER_CONFIG = "/etc/hexgen2/router.json"
ENGINE_KEY_DIR = "/etc/hexgen2-engine-key"  # where the router mounts the engines' shared secret


def engine_secret_name(deployment: str) -> str:
    """The Kubernetes Secret (key `key`) holding the deployment secret every engine requires (vLLM reads
    it from VLLM_API_KEY) and the router sends. Users create it; a manifest never carries a secret."""
    return k8s_name(deployment, "engine-key")


DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class K8sOptions:
    """What a cluster needs beyond the plan: images, names, the router's port and seed."""

    image: str = "vllm/vllm-openai:v0.33.0"  # the vLLM the launcher's flags are checked against
    router_image: str = "hexgen2:0.1.0"  # an image with `pip install hexgen2[launch]`
    name: str = "hexgen2"
    namespace: str | None = None
    router_port: int = 8000
    seed: int = 0


def k8s_name(*parts: str) -> str:
    """A DNS-1035 label (lowercase, '-', ≤ 63, starts with a letter) from the parts; a hash keeps names
    distinct when characters had to be replaced or the text cut."""
    text = "-".join(parts)
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not name[:1].isalpha():
        name = "x-" + name
    if name != text or len(name) > 63:
        name = f"{name[:56].rstrip('-')}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return name


def manifests(
    plan: Plan, options: EngineOptions, k8s: K8sOptions = K8sOptions(), plan_file: Path | str = "plan"
) -> list[dict[str, Any]]:
    """Every document (module docstring); LaunchError listing why `plan_file` cannot run, as hexlaunch would."""
    problems = plan_problems(plan, options.connector)
    if problems:
        raise LaunchError(listed(f"{plan_file}: the plan cannot be launched:", problems))
    rank0 = {launch.replica.id: launch for launch in build_launches(plan, options, _every_node(plan, POD_IP))}
    docs: list[dict[str, Any]] = []
    urls = {}
    for replica in ordered(plan):
        launch = rank0[replica.id]
        name = k8s_name(k8s.name, replica.id)
        if len(launch.processes) == 1:
            docs.append(_deployment(name, replica, launch.processes[0], launch.port, k8s))
        else:
            docs.append(_leader_worker_set(name, plan, replica, launch, options, k8s))
        docs.append(_service(name, {REPLICA_LABEL: name, RANK_KEY: "0"}, launch.port, k8s))
        urls[replica.id] = f"http://{name}:{launch.port}"
    docs += _router(plan, list(rank0.values()), urls, k8s)
    return docs


def _every_node(plan: Plan, host: str) -> dict[str, str]:
    return {g.partition("/")[0]: host for r in plan.replicas for g in r.gpus}


def _metadata(name: str, k8s: K8sOptions, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if k8s.namespace:
        meta["namespace"] = k8s.namespace
    meta["labels"] = {"app.kubernetes.io/name": "hexgen2", "app.kubernetes.io/instance": k8s.name, **(labels or {})}
    return meta


def _pod(
    name: str, replica: ReplicaPlan, process: Process, port: int | None, k8s: K8sOptions, rank: str = "0"
) -> dict[str, Any]:
    """The pod template of one node's share of a replica: the launcher's argv and env, on its node.
    `port`: the leader's HTTP port (None for headless workers); `rank`: its node rank, as text."""
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    secret = {"secretKeyRef": {"name": engine_secret_name(k8s.name), "key": "key"}}
    env += [
        {"name": k, "valueFrom": secret} if k == SECRET_ENV else {"name": k, "value": v}
        for k, v in sorted(process.env.items())
        if k != "CUDA_VISIBLE_DEVICES"
    ]
    container: dict[str, Any] = {
        "name": "vllm",
        "image": k8s.image,
        "command": list(process.argv),
        "env": env,
        "resources": {"limits": {"nvidia.com/gpu": len(process.gpus)}},
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port}]
        probe = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 10, "failureThreshold": 90}
        container["readinessProbe"] = probe
    annotations = {
        "hexgen2.io/replica-id": replica.id,
        "hexgen2.io/tp": str(replica.tp),
        "hexgen2.io/pp": str(replica.pp),
        RANK_KEY: rank,
        "hexgen2.io/plan-gpus": " ".join(process.gpus),
    }
    labels = {REPLICA_LABEL: name, ROLE_LABEL: replica.role, RANK_KEY: "0" if port is not None else "worker"}
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "nodeSelector": {GPU_LABEL: process.gpu_type, NODE_LABEL: process.node},
            "containers": [container],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        },
    }


def _deployment(name: str, replica: ReplicaPlan, process: Process, port: int, k8s: K8sOptions) -> dict[str, Any]:
    pod = _pod(name, replica, process, port, k8s)
    return {
        "apiVersion": KINDS["Deployment"],
        "kind": "Deployment",
        "metadata": _metadata(name, k8s, {REPLICA_LABEL: name, ROLE_LABEL: replica.role}),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {REPLICA_LABEL: name, RANK_KEY: "0"}},
            "template": pod,
        },
    }


def _leader_worker_set(
    name: str, plan: Plan, replica: ReplicaPlan, launch: ReplicaLaunch, options: EngineOptions, k8s: K8sOptions
) -> dict[str, Any]:
    """A LeaderWorkerSet of the replica's node shares (module docstring)."""
    shares = node_shares(replica)
    leader_node = shares[0].node
    hosts = {**_every_node(plan, POD_IP), leader_node: LEADER}
    workers = next(x for x in build_launches(plan, options, hosts) if x.replica.id == replica.id).processes[1:]
    if len({w.gpu_type for w in workers}) > 1:
        raise LaunchError(
            f"replica {replica.id}: its worker ranks run on different GPU types "
            f"({', '.join(sorted({w.gpu_type for w in workers}))}); a LeaderWorkerSet gives all workers one "
            "template.",
            hint="launch this plan with hexlaunch, or re-plan with fewer nodes per replica",
        )
    worker, rank = workers[0], "1"
    if len(workers) > 1:  # one template for every worker: its rank comes from LWS
        argv = list(worker.argv)
        argv[argv.index("--node-rank") + 1] = rank = WORKER_INDEX
        worker = Process(worker.replica_id, worker.role, worker.node, worker.node_rank, worker.gpus,
                         worker.gpu_type, tuple(argv), worker.env)  # fmt: skip
    worker_pod = _pod(name, replica, worker, None, k8s, rank)
    if len(workers) > 1:
        nodes = sorted(w.node for w in workers)
        del worker_pod["spec"]["nodeSelector"][NODE_LABEL]
        term = {"matchExpressions": [{"key": NODE_LABEL, "operator": "In", "values": nodes}]}
        worker_pod["spec"]["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    return {
        "apiVersion": KINDS["LeaderWorkerSet"],
        "kind": "LeaderWorkerSet",
        "metadata": _metadata(name, k8s, {REPLICA_LABEL: name, ROLE_LABEL: replica.role}),
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": len(shares),
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _pod(name, replica, launch.processes[0], launch.port, k8s),
                "workerTemplate": worker_pod,
            },
        },
    }


def _service(name: str, selector: Mapping[str, str], port: int, k8s: K8sOptions) -> dict[str, Any]:
    return {
        "apiVersion": KINDS["Service"],
        "kind": "Service",
        "metadata": _metadata(name, k8s),
        "spec": {"selector": dict(selector), "ports": [{"name": "http", "port": port, "targetPort": port}]},
    }


def _router(plan: Plan, launches: list[ReplicaLaunch], urls: Mapping[str, str], k8s: K8sOptions) -> list[dict]:
    """ConfigMap (the router's config, engines at their Services), the router's Deployment and Service."""
    settings = RouterSettings(seed=k8s.seed, engine_key_file=Path(ENGINE_KEY_DIR) / "key")
    config = plan_config(plan, urls, settings).model_dump(mode="json")
    name = k8s_name(k8s.name, "router")
    labels = {"app.kubernetes.io/component": "router", "app.kubernetes.io/instance": k8s.name}
    argv = ["hexlaunch", "router", ROUTER_CONFIG, "--host", "0.0.0.0", "--port", str(k8s.router_port)]
    container = {
        "name": "router",
        "image": k8s.router_image,
        "command": argv,
        "ports": [{"name": "http", "containerPort": k8s.router_port}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": k8s.router_port}, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/hexgen2", "readOnly": True},
            {"name": "engine-key", "mountPath": ENGINE_KEY_DIR, "readOnly": True},
        ],
    }
    volumes = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "engine-key", "secret": {"secretName": engine_secret_name(k8s.name)}},
    ]
    pod = {"containers": [container], "volumes": volumes}
    return [
        {
            "apiVersion": KINDS["ConfigMap"],
            "kind": "ConfigMap",
            "metadata": _metadata(name, k8s),
            "data": {"router.json": json.dumps(config, indent=2, sort_keys=True) + "\n"},
        },
        {
            "apiVersion": KINDS["Deployment"],
            "kind": "Deployment",
            "metadata": _metadata(name, k8s, labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        _service(name, labels, k8s.router_port, k8s),
    ]


def to_yaml(docs: list[dict[str, Any]], header: str) -> str:
    """The documents as one multi-document YAML stream, `header` as a leading comment."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    plain = json.loads(json.dumps(docs))  # no shared objects, so no YAML anchors and aliases
    body = yaml.safe_dump_all(plain, sort_keys=False, default_flow_style=False, width=10_000, allow_unicode=True)
    return comment + "---\n" + body


def check_manifests(text: str) -> list[str]:
    """What is wrong with a manifest stream (empty when nothing): YAML documents of known apiVersion and
    kind, DNS-label names unique per kind, pods with an image and an argv, GPU limits, selectors that
    select a pod template, Service target ports that a selected container opens."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        return [f"not YAML: {exc}"]
    problems, pods, seen = [], [], set()
    for i, doc in enumerate(docs):
        where = f"document {i + 1}"
        if not isinstance(doc, dict) or KINDS.get(doc.get("kind")) != doc.get("apiVersion"):
            kind = (doc.get("apiVersion"), doc.get("kind")) if isinstance(doc, dict) else type(doc).__name__
            problems.append(f"{where}: {kind} is not one of {sorted(KINDS.items())}")
            continue
        name = str(doc.get("metadata", {}).get("name", ""))
        where = f"{doc['kind']} {name!r}"
        if not DNS_LABEL.match(name) or (doc["kind"], name) in seen:
            problems.append(f"{where}: the name is not a DNS label, or is used twice")
        seen.add((doc["kind"], name))
        templates = _templates(doc)
        if doc["kind"] == "Deployment":
            wanted = doc["spec"]["selector"]["matchLabels"].items()
            if not wanted <= templates[0]["metadata"]["labels"].items():
                problems.append(f"{where}: spec.selector does not select its own pod template")
        problems += [f"{where}: {p}" for t in templates for p in _pod_problems(t)]
        pods += templates
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Service":
            problems += _service_problems(doc, pods)
    return problems


def _templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Deployment":
        return [doc["spec"]["template"]]
    if doc["kind"] == "LeaderWorkerSet":
        group = doc["spec"]["leaderWorkerTemplate"]
        return [group["leaderTemplate"], group["workerTemplate"]] if group.get("size", 0) >= 2 else []
    return []


def _pod_problems(template: dict[str, Any]) -> list[str]:
    problems = []
    for c in template["spec"].get("containers") or [{}]:
        command = c.get("command")
        if not c.get("image") or not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            problems.append(f"container {c.get('name')!r} lacks an image or an argv (a list of strings)")
        gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 1)
        if not isinstance(gpus, int) or gpus < 1:
            problems.append(f"container {c.get('name')!r}: nvidia.com/gpu {gpus!r} is not a positive integer")
    return problems


def _service_problems(service: dict[str, Any], pods: list[dict[str, Any]]) -> list[str]:
    selector = service["spec"].get("selector", {}).items()
    chosen = [p for p in pods if selector and selector <= p["metadata"].get("labels", {}).items()]
    opened = {port["containerPort"] for p in chosen for c in p["spec"]["containers"] for port in c.get("ports", [])}
    where = f"Service {service['metadata']['name']!r}"
    if not chosen:
        return [f"{where}: its selector matches no pod template"]
    return [f"{where}: no selected container opens port {p['targetPort']}" for p in service["spec"]["ports"]
            if p.get("targetPort") not in opened]  # fmt: skip
