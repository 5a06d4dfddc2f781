"""Match the plan's nodes to Ray nodes by label, and list everything missing before anything starts.

The contract with the operator (README "Launch on a GPU cluster"): every Ray node that hosts part of
a plan is started with two labels,

    ray start ... --labels "hexgen2.io/node=<node name in cluster.yaml>,hexgen2.io/gpu=<GPU type key>"

and its GPU count (`--num-gpus`, auto-detected on GPU machines). Labels rather than custom resources
because Ray recommends labels for placement by identity (resources are for quantities), and because a
placement-group bundle can select on them (`bundle_label_selector`). Pure: takes `ray.nodes()` output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from launcher.errors import LaunchError, listed
from launcher.vllm_args import ReplicaLaunch, gpu_index

NODE_LABEL = "hexgen2.io/node"
GPU_LABEL = "hexgen2.io/gpu"


@dataclass(frozen=True)
class RayNode:
    node_id: str
    address: str
    labels: Mapping[str, str]
    gpus: int
    alive: bool

    @property
    def name(self) -> str | None:
        return self.labels.get(NODE_LABEL)


@dataclass(frozen=True)
class NodeNeed:
    """What the plan asks of one node: its GPU type and the GPU indices it uses there."""

    node: str
    gpu_type: str
    indices: frozenset[int]


def ray_nodes(raw: Iterable[Mapping[str, object]]) -> list[RayNode]:
    """RayNode records from `ray.nodes()` dictionaries."""
    return [
        RayNode(
            node_id=str(n["NodeID"]),
            address=str(n["NodeManagerAddress"]),
            labels=dict(n.get("Labels") or {}),
            gpus=int(dict(n.get("Resources") or {}).get("GPU", 0)),
            alive=bool(n["Alive"]),
        )
        for n in raw
    ]


def needs(launches: Sequence[ReplicaLaunch]) -> list[NodeNeed]:
    by_node: dict[str, tuple[str, set[int]]] = {}
    for launch in launches:
        for process in launch.processes:
            _, indices = by_node.setdefault(process.node, (process.gpu_type, set()))
            indices.update(int(gpu_index(g)) for g in process.gpus)
    return [NodeNeed(node, t, frozenset(ix)) for node, (t, ix) in sorted(by_node.items())]


def match_nodes(wanted: Sequence[NodeNeed], available: Sequence[RayNode]) -> dict[str, RayNode]:
    """plan node → Ray node, or LaunchError listing every node that is missing or wrong."""
    alive = [n for n in available if n.alive]
    problems, matched = [], {}
    for need in wanted:
        candidates = [n for n in alive if n.name == need.node]
        if not candidates:
            problems.append(f"{need.node}: no alive Ray node has the label {NODE_LABEL}={need.node}.")
            continue
        if len(candidates) > 1:
            ids = ", ".join(n.node_id[:12] for n in candidates)
            problems.append(f"{need.node}: {len(candidates)} Ray nodes carry {NODE_LABEL}={need.node} ({ids}).")
            continue
        node = candidates[0]
        gpu_type = node.labels.get(GPU_LABEL)
        if gpu_type is None:
            problems.append(f"{need.node}: the Ray node has no {GPU_LABEL} label (the plan expects {need.gpu_type}).")
        elif gpu_type != need.gpu_type:
            problems.append(f"{need.node}: the Ray node's {GPU_LABEL} is {gpu_type}; the plan expects {need.gpu_type}.")
        if node.gpus <= max(need.indices):
            problems.append(
                f"{need.node}: the plan uses GPU index {max(need.indices)} but the Ray node has {node.gpus} GPU(s)."
            )
        matched[need.node] = node
    if problems:
        labelled = sorted(f"{n.name} ({n.address})" for n in alive if n.name)
        raise LaunchError(
            listed("the Ray cluster does not hold what the plan names; nothing was started:", problems),
            hint=(
                f'start each Ray node with --labels "{NODE_LABEL}=NAME,{GPU_LABEL}=TYPE" and its GPUs '
                f"(labelled nodes now: {', '.join(labelled) or 'none'})"
            ),
        )
    return matched
