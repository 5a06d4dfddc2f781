"""What a launch would do, as one JSON-able document (`--format json`) or readable text.

Without a Ray cluster the hosts are the plan's node names; at launch they become the addresses of
the Ray nodes carrying those labels. Nothing here starts or contacts anything.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from launcher import state as st
from launcher.nodes import NODE_LABEL
from launcher.router_config import RouterSettings, plan_config, router_argv
from launcher.vllm_args import EngineOptions, ReplicaLaunch
from planner.plans.schema import Plan


def replica_document(launch: ReplicaLaunch, deployment: str) -> dict[str, Any]:
    """One replica as the dry run shows it: its placement group and, per node, the actor, bundle, env, argv."""
    processes = [
        {
            "actor": st.engine_actor_name(deployment, p.replica_id, p.node_rank),
            "node": p.node,
            "node_rank": p.node_rank,
            "gpu_type": p.gpu_type,
            "gpus": list(p.gpus),
            "bundle": {"GPU": len(p.gpus)},
            "label_selector": {NODE_LABEL: p.node},
            "env": dict(p.env),
            "argv": list(p.argv),
        }
        for p in launch.processes
    ]
    replica = launch.replica
    return {
        "id": replica.id,
        "role": replica.role,
        "tp": replica.tp,
        "pp": replica.pp,
        "url": launch.url,
        "placement_group": st.placement_group_name(deployment, replica.id),
        "processes": processes,
    }


def dry_run_document(
    plan: Plan,
    plan_file: Path,
    launches: Sequence[ReplicaLaunch],
    options: EngineOptions,
    state_dir: Path,
    router: tuple[str, int],
    settings: RouterSettings,
    problems: Sequence[str],
) -> dict[str, Any]:
    """Everything a launch would start, as data; secrets appear as placeholders."""
    host, port = router
    deployment = st.deployment_name(state_dir)
    replicas = [replica_document(launch, deployment) for launch in launches]
    shares = []
    if not problems:
        policy = plan_config(plan, {lau.replica.id: lau.url for lau in launches}, settings).policy()
        shares = [
            {"first": first, "decode": decode, "share": round(share, 6)}
            for (first, decode), share in sorted(policy.weights().items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ]
    return {
        "plan": str(plan_file),
        "model": plan.model,
        "engine_model": options.model,
        "connector": options.connector,
        "replicas": replicas,
        "router": {
            "actor": st.router_actor_name(deployment),
            "url": f"http://{host}:{port}",
            "node": "the node running hexlaunch",
            "argv": router_argv(st.router_config_path(state_dir), host, port),
            "settings": settings.model_dump(mode="json", exclude={"api_key_file", "engine_key_file"}),
            "traffic_shares": shares,
        },
        "problems": list(problems),
    }


def bundle_text(process: dict[str, Any]) -> str:
    """The placement bundle in words (the JSON keeps Ray's own dicts)."""
    labels = ", ".join(f"{key}={value}" for key, value in sorted(process["label_selector"].items()))
    return f"placement bundle of {process['bundle']['GPU']} GPUs on the Ray node labelled {labels}"


def render_text(doc: dict[str, Any]) -> str:
    processes = sum(len(r["processes"]) for r in doc["replicas"])
    lines = [
        f"# hexlaunch dry run of {doc['plan']}: model {doc['model']} (vllm loads {doc['engine_model']}), "
        f"connector {doc['connector']}",
        f"# {len(doc['replicas'])} replicas, {processes} engine processes, 1 router; nothing was started.",
        "# Hosts below are the plan's node names: at launch each becomes the IP address of the Ray node labelled",
        f"# {NODE_LABEL}=<name> (in --host, --master-addr, VLLM_HOST_IP, the side-channel host and the URLs).",
    ]
    for replica in doc["replicas"]:
        lines += [
            "",
            f"replica {replica['id']}  role={replica['role']}  tp={replica['tp']} pp={replica['pp']}  "
            f"url={replica['url']}  placement group {replica['placement_group']}",
        ]
        for p in replica["processes"]:
            lines.append(
                f"  actor {p['actor']}: node {p['node']} ({p['gpu_type']}), rank {p['node_rank']}, "
                f"GPUs {' '.join(p['gpus'])}, {bundle_text(p)}"
            )
            lines.append("    env  " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(p["env"].items())))
            lines.append("    argv " + shlex.join(p["argv"]))
    router = doc["router"]
    lines += ["", f"router {router['actor']}: {router['url']} on {router['node']}"]
    lines.append("    argv " + shlex.join(router["argv"]))
    for share in router["traffic_shares"]:
        target = f" → {share['decode']}" if share["decode"] else " (colocated)"
        lines.append(f"    {share['first']}{target}: {100 * share['share']:.1f}% of requests")
    if doc["problems"]:
        lines += ["", "problems (a launch would refuse this plan):"] + [f"  - {p}" for p in doc["problems"]]
    return "\n".join(lines)
