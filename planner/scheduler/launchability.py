"""Which replicas vLLM and the KV connectors can run: every launch rule, written once.

The layout search (planner.scheduler.layouts) only enumerates layouts these rules admit, plan checks
(planner.plans.checks) reject plans that break them, and the launcher (launcher.vllm_args) refuses to
start such plans. So the functions here take plain data — GPU ids "node/index", layer ranges, TP and
PP sizes, role, connector, and optionally the model's head counts — never a cluster or a plan.

The rules (vLLM 0.32 and 0.33, multiprocessing backend):
- a TP group (a stage) sits on one node; every stage has the same TP size, which divides the attention
  heads and divides, or is a multiple of, the KV heads;
- stages hold consecutive layer ranges [0, a), [a, b), … covering the model;
- a replica spanning nodes runs one engine process per node, so each node's stages are consecutive and
  every node holds the same number of GPUs;
- with a KV connector (anything but "none"): decode replicas have PP = 1, and a prefill and a decode
  replica exchange KV only when their TP sizes divide one another;
- vLLM 0.33's P/D rules, read from its NixlConnector (applied to every connector, as the safe side):
  a prefill with more TP ranks than its decode peer may not replicate KV heads (TP > KV heads), a
  pipeline-parallel replica needs a model whose KV cache is full attention throughout (no sliding-window
  or hybrid layers), and a pipeline-parallel replica admits at least PP sequences (`max_num_seqs ≥ pp`),
  one per micro-batch in flight. Each function below cites the vLLM source it encodes.
A plan solved with connector "none" is a cost-model exercise, not meant to launch: the planner then
applies only the first two rules (`launch=False`).

A problem is returned as a `Problem` (field below the replica, text), so the planner prefixes it with
the plan's field path and the launcher with the replica's id: one text per rule for both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from planner.types import Connector, Role

CONNECTOR_NAME = {"nixl": "NIXL", "mooncake": "Mooncake", "lmcache": "LMCache", "none": "no"}
StageSpec = tuple[Sequence[str], tuple[int, int]]  # (GPU ids of the stage's TP group, [first, end) layers)


class ModelShape(Protocol):
    """What the rules need to know about the model (a catalogue ModelProfile has it)."""

    @property
    def heads(self) -> int: ...

    @property
    def kv_heads(self) -> int: ...

    @property
    def layers(self) -> int: ...

    @property
    def kv_layout(self) -> str: ...  # "full" | "sliding_window" | "hybrid"


@dataclass(frozen=True)
class Problem:
    """One broken rule: `field` is the path below the replica ('', '.stages[1]', '.gpu_types', …)."""

    field: str
    text: str

    def at(self, where: str) -> str:
        return f"{where}{self.field}: {self.text}"


def has_connector(connector: Connector) -> bool:
    """Whether KV moves between replicas (so the connector's rules apply); 'none' is the cost model alone."""
    return connector != "none"


def node_of(gpu: str) -> str:
    """The node of a GPU id 'node/index' (check `gpu_id_problem` first for ids from outside)."""
    return gpu.partition("/")[0]


def gpu_id_problem(gpu: str) -> str | None:
    node, slash, index = gpu.partition("/")
    if node and slash and index.isdigit():
        return None
    return f"GPU id {gpu!r} is not of the form node/index (e.g. a100-0/3)."


def valid_tp(tp: int, model: ModelShape) -> bool:
    """TP sizes vLLM accepts: they split the attention heads evenly and the KV heads evenly or by replication."""
    return model.heads % tp == 0 and (model.kv_heads % tp == 0 or tp % model.kv_heads == 0)


def tp_compatible(a: int, b: int) -> bool:
    """KV connectors need the TP sizes of a prefill and a decode replica to divide one another."""
    return a % b == 0 or b % a == 0


def equal_per_node(counts: Iterable[int]) -> bool:
    """vLLM's multi-node launch runs the same number of GPUs on every node of a replica."""
    return len(set(counts)) <= 1


def decode_pp_allowed(role: Role, pp: int, kv_connector: bool) -> bool:
    """KV connectors hand a decode replica its cache in one piece: decode PP = 1 (when one is used).

    vLLM 0.33: vllm/distributed/kv_transfer/kv_connector/v1/nixl/base_worker.py,
    NixlBaseConnectorWorker.__init__ raises for kv_role "kv_consumer" with pipeline_parallel_size > 1
    ("completions counted per consumer rank"); a prefill (kv_producer) with PP > 1 is accepted.
    """
    return not kv_connector or role != "decode" or pp == 1


def pair_allowed(tp_prefill: int, tp_decode: int, kv_heads: int) -> bool:
    """Whether a prefill replica of TP `tp_prefill` can hand its KV to a decode replica of TP `tp_decode`.

    vLLM 0.33: the sizes must divide one another (TransferTopology.tp_ratio asserts it,
    vllm/distributed/kv_transfer/kv_connector/utils.py), and when the prefill has more ranks than the
    decode it may not replicate KV heads (TP > KV heads): NixlBaseConnectorWorker.
    _validate_remote_agent_handshake (nixl/base_worker.py) asserts
    `not (tp_ratio < 0 and transfer_topo.is_kv_replicated(remote))` for non-MLA, non-Mamba models.
    """
    return tp_compatible(tp_prefill, tp_decode) and not (tp_prefill > tp_decode and tp_prefill > kv_heads)


def pipeline_kv_allowed(pp: int, kv_layout: str, kv_connector: bool) -> bool:
    """Whether the connector can move the KV of a replica with `pp` stages for a model of this KV layout.

    vLLM 0.33: NixlBaseConnectorWorker.__init__ (nixl/base_worker.py) raises NotImplementedError for
    pipeline_parallel_size > 1 when `_is_hma_required` — any layer whose KV spec is not
    FullAttentionSpec, i.e. sliding-window (Mistral-7B v0.1) or hybrid (Gemma-2) models — in the pull
    NixlConnector, and for Mamba hybrids in every mode.
    """
    return not kv_connector or pp == 1 or kv_layout == "full"


def pipeline_batch_problem(pp: int, max_num_seqs: int) -> str | None:
    """A pipeline keeps PP micro-batches in flight, each of different sequences, so it runs full only
    when the engine admits at least PP sequences.

    vLLM 0.33: VllmConfig.max_concurrent_batches = pipeline_parallel_size (vllm/config/vllm.py), the
    depth of EngineCore's batch queue (vllm/v1/engine/core.py), and a running request sits in one batch
    at a time under the scheduler's max_num_seqs.
    """
    if pp <= 1 or max_num_seqs >= pp:
        return None
    return f"max_num_seqs={max_num_seqs} < PP={pp}: the pipeline could never hold a micro-batch per stage."


def revisits(stage_nodes: Sequence[str]) -> bool:
    """Whether the pipeline comes back to a node it left (vLLM numbers ranks node by node)."""
    return any(a != b and b in stage_nodes[:i] for i, (a, b) in enumerate(pairwise(stage_nodes)))


def layout_problems(
    stages: Sequence[StageSpec],
    *,
    role: Role,
    connector: Connector,
    launch: bool = True,
    model: ModelShape | None = None,
    known_gpus: Collection[str] | None = None,
) -> list[Problem]:
    """Every rule of the module docstring the layout breaks, stage by stage, then the replica's.

    `launch=False` skips the multi-node and connector rules; `model` adds the head and layer-count rules;
    `known_gpus` (a cluster's GPU ids) flags GPUs it lacks.
    The first problem is the one the planner reports; the launcher lists them all.
    """
    problems = []
    tp = len(stages[0][0]) if stages else 0
    expected = 0
    for i, (gpus, (start, end)) in enumerate(stages):
        field = f".stages[{i}]"
        unknown = [g for g in gpus if known_gpus is not None and g not in known_gpus]
        if unknown:
            problems.append(Problem(field, f"GPU(s) {', '.join(unknown)} are not in the cluster."))
            continue
        nodes = {node_of(g) for g in gpus}
        if len(nodes) > 1:
            problems.append(Problem(field, f"a TP group must sit on one node, got {', '.join(sorted(nodes))}."))
        if start != expected or end <= start:
            problems.append(
                Problem(f"{field}.layers", f"expected a range starting at layer {expected}, got [{start}, {end}).")
            )
        if len(gpus) != tp:
            problems.append(Problem(field, f"every stage needs the same TP size ({tp}), got {len(gpus)}."))
        if model is not None and not valid_tp(len(gpus), model):
            problems.append(
                Problem(
                    field,
                    f"TP {len(gpus)} must divide the model's {model.heads} attention heads and "
                    f"divide, or be a multiple of, its {model.kv_heads} KV heads.",
                )
            )
        expected = end
    if model is not None and expected != model.layers:
        problems.append(Problem("", f"stages cover layers [0, {expected}) but the model has {model.layers}."))
    if problems or not launch:
        return problems
    stage_nodes = [node_of(gpus[0]) for gpus, _ in stages]
    per_node = Counter(node_of(g) for gpus, _ in stages for g in gpus)
    if revisits(stage_nodes):
        problems.append(
            Problem("", f"the stages on one node must be consecutive (node order {', '.join(stage_nodes)}).")
        )
    elif not equal_per_node(per_node.values()):
        counts = ", ".join(f"{node}: {n}" for node, n in sorted(per_node.items()))
        problems.append(Problem("", f"a replica across nodes needs the same number of GPUs on each node ({counts})."))
    return problems + connector_problems(len(stages), role, connector, model)


def connector_problems(pp: int, role: Role, connector: Connector, model: ModelShape | None) -> list[Problem]:
    """The KV connector's rules on one replica's pipeline depth (decode PP, PP with a non-full KV layout)."""
    problems, name = [], CONNECTOR_NAME[connector]
    if not decode_pp_allowed(role, pp, has_connector(connector)):
        problems.append(Problem("", f"a decode replica with PP={pp}; {name} KV transfer needs decode PP = 1."))
    layout = model.kv_layout if model is not None else "full"
    if not pipeline_kv_allowed(pp, layout, has_connector(connector)):
        problems.append(
            Problem("", f"PP={pp} with a {layout} KV cache; {name} KV transfer (vLLM 0.33) needs PP = 1 here.")
        )
    return problems


def gpu_types_problem(types: int, stages: int) -> Problem | None:
    """A plan records one GPU type per stage (what the launcher matches Ray nodes' labels against)."""
    return None if types == stages else Problem(".gpu_types", f"{types} types for {stages} stages.")


def record_problems(tp: int, pp: int, stage_sizes: Sequence[int], gpu_types: Sequence[str]) -> list[Problem]:
    """Whether a plan's replica record agrees with itself: the tp, pp and gpu_types fields with its stages."""
    if pp != len(stage_sizes) or any(size != tp for size in stage_sizes):
        return [Problem("", f"tp={tp}, pp={pp} disagree with its {len(stage_sizes)} stages.")]
    problem = gpu_types_problem(len(gpu_types), len(stage_sizes))
    return [problem] if problem else []


def route_roles_problem(source: Role | None, target: Role | None) -> str | None:
    """KV flows from a prefill replica to a decode replica, never otherwise (None: this pair can carry it)."""
    return None if (source, target) == ("prefill", "decode") else "is not a prefill → decode pair."


def route_problem(tp_prefill: int, tp_decode: int, connector: Connector, kv_heads: int | None = None) -> str | None:
    """Why KV cannot move between replicas of these TP sizes with this connector (None: it can).
    Without `kv_heads` (a model the caller does not know) the KV-replication rule is not checked."""
    if not has_connector(connector):
        return None
    name = CONNECTOR_NAME[connector]
    if not tp_compatible(tp_prefill, tp_decode):
        return f"TP {tp_prefill} and {tp_decode} do not divide one another ({name} KV transfer needs that)."
    if kv_heads is not None and not pair_allowed(tp_prefill, tp_decode, kv_heads):
        return (
            f"prefill TP {tp_prefill} > decode TP {tp_decode} while the prefill replicates the model's {kv_heads} "
            f"KV heads ({name} KV transfer, vLLM 0.33, refuses that)."
        )
    return None


def shared_gpus(replica_gpus: Iterable[Iterable[str]]) -> str | None:
    """The problem of GPUs named by more than one replica (None when every GPU serves one replica)."""
    used = Counter(g for gpus in replica_gpus for g in gpus)
    twice = sorted(g for g, n in used.items() if n > 1)
    return f"plan uses GPU(s) {', '.join(twice)} in more than one replica." if twice else None


def connector_problem(roles: Iterable[Role], connector: Connector) -> str | None:
    """Disaggregated replicas need a connector to hand KV over; without one only colocated replicas run."""
    if has_connector(connector) or all(role == "colocated" for role in roles):
        return None
    return "connector 'none' can only run colocated replicas; prefill/decode need a KV connector."
