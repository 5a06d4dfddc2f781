"""Plan replica → the `vllm serve` processes that run it: argv (a list, never a shell string) and env.

Pure functions over the plan: no Ray, no network. The same output feeds `--dry-run`, the Ray
backend and the contract check against vLLM's own parser (`make test-vllm`).

What a replica becomes (vLLM 0.32/0.33 flags):
- one process per node the replica spans. Single node: `--distributed-executor-backend mp`.
  Several nodes: the same argv on each with `--nnodes N --node-rank r --master-addr <rank-0 host>
  --master-port P`, and `--headless` on ranks > 0 (only rank 0 serves HTTP). vLLM numbers ranks
  node by node, so a node's stages must be consecutive in the pipeline and every node must hold the
  same number of GPUs; `plan_problems` says so before anything starts (the planner's launch rules,
  planner.scheduler.launchability).
- `--tensor-parallel-size`/`--pipeline-parallel-size` from the plan; uneven stages via the env
  `VLLM_PP_LAYER_PARTITION` (layers per stage, e.g. "10,14"), always set when PP > 1.
- `CUDA_VISIBLE_DEVICES` = the plan's GPU indices on that node, in pipeline order (the launcher owns
  the GPUs its plan names; Ray's own GPU assignment only reserves the count).
- `--kv-transfer-config` JSON: connector by name, `kv_role` kv_producer (prefill) / kv_consumer
  (decode), `engine_id` = replica id. NIXL also gets `VLLM_NIXL_SIDE_CHANNEL_HOST/PORT`; each
  replica reserves tp×pp side-channel ports (vLLM offsets worker ports from the base).
- batch limits, context length and memory fraction from `replica.engine`; `--dtype` from the plan
  (fp8 plans: `--quantization fp8 --kv-cache-dtype fp8`).
- `--attention-backend` pinned (default FLASH_ATTN) on every engine: vLLM 0.33's NIXL handshake refuses
  a peer whose attention backend differs (the backend is part of `compute_nixl_compatibility_hash`,
  vllm/distributed/kv_transfer/kv_connector/v1/nixl/metadata.py), and two GPU types left to choose
  on their own may resolve different ones.
- `VLLM_API_KEY` = the deployment secret (vLLM reads it like `--api-key`, but an env var stays out of
  `ps`; vllm/entrypoints/serve/middleware/register.py), so only the router reaches the engines; the
  dry run shows a placeholder. `--env KEY=VAL` pairs go to every engine (HF_TOKEN, UCX_*, NCCL_*).
Ports are assigned in the plan's replica order (role, id), so the same plan gives the same ports.
Every plan string that lands in argv or env is checked first (`input_problems`): a value starting
with '-' would be read as a flag, a control character could split a log line or a header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from launcher.errors import LaunchError
from planner.plans.schema import Plan, ReplicaPlan
from planner.scheduler import launchability
from planner.sim.routing import NO_TRAFFIC, PlannedRouting
from planner.types import Connector

CONNECTOR_CLASS = {"nixl": "NixlConnector", "mooncake": "MooncakeConnector", "lmcache": "LMCacheConnectorV1"}
KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}
SECRET_ENV = "VLLM_API_KEY"
SECRET_PLACEHOLDER = "<deployment secret, generated at start>"
LAUNCHER_ENV = frozenset(
    {
        "CUDA_VISIBLE_DEVICES",
        "VLLM_PP_LAYER_PARTITION",
        "VLLM_HOST_IP",
        "VLLM_NIXL_SIDE_CHANNEL_HOST",
        "VLLM_NIXL_SIDE_CHANNEL_PORT",
        SECRET_ENV,
    }
)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BACKEND_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
DTYPE_ARGS = {
    "float16": ("--dtype", "float16"),
    "bfloat16": ("--dtype", "bfloat16"),
    "fp8": ("--quantization", "fp8", "--kv-cache-dtype", "fp8"),
}


@dataclass(frozen=True)
class EngineOptions:
    """How to start engines; everything not in the plan itself."""

    model: str  # what `vllm serve` loads: a Hugging Face id or a local path
    served_name: str  # the model name clients send (the plan's model)
    engine_cmd: tuple[str, ...] = ("vllm",)
    connector: Connector = "nixl"
    api_port: int = 8100  # replica i serves HTTP on api_port + i
    side_channel_port: int = 5600  # NIXL handshake ports: a block of tp×pp per replica from here
    master_port: int = 29500  # torch.distributed rendezvous of multi-node replica i: master_port + i
    extra_args: tuple[str, ...] = ()  # appended to every engine's argv (e.g. --enforce-eager)
    attention_backend: str | None = "FLASH_ATTN"  # pinned on both sides of a P/D pair; None: vLLM chooses
    env: tuple[tuple[str, str], ...] = ()  # --env KEY=VAL pairs for every engine


@dataclass(frozen=True)
class NodeShare:
    """The GPUs of one replica on one node, in pipeline order; `rank` is the vLLM node rank."""

    node: str
    rank: int
    gpus: tuple[str, ...]
    gpu_type: str


@dataclass(frozen=True)
class Process:
    """One OS process to start: a replica's engine (or one node's share of it)."""

    replica_id: str
    role: str
    node: str
    node_rank: int
    gpus: tuple[str, ...]
    gpu_type: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def headless(self) -> bool:
        return "--headless" in self.argv


@dataclass(frozen=True)
class ReplicaLaunch:
    """Everything needed to start, reach and identify one replica."""

    replica: ReplicaPlan
    host: str
    ports: Ports
    processes: tuple[Process, ...]

    @property
    def port(self) -> int:
        return self.ports.api

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def ordered(plan: Plan) -> list[ReplicaPlan]:
    """Replicas in the order ports are assigned (the order plan.yaml lists them)."""
    return sorted(plan.replicas, key=lambda r: (r.role, r.id))


def split_gpu(gpu: str) -> tuple[str, str]:
    """A GPU id "node/index" → (node, index). read_plan rejects other shapes; plans built in code get LaunchError."""
    if (problem := launchability.gpu_id_problem(gpu)) is not None:
        raise LaunchError(problem)
    node, _, index = gpu.partition("/")
    return node, index


def node_of(gpu: str) -> str:
    return split_gpu(gpu)[0]


def gpu_index(gpu: str) -> str:
    return split_gpu(gpu)[1]


def node_shares(replica: ReplicaPlan) -> list[NodeShare]:
    """Group the replica's stages by node, in pipeline order (assumes `plan_problems` found nothing)."""
    shares: list[NodeShare] = []
    for stage, gpu_type in zip(replica.stages, replica.gpu_types, strict=True):
        node = node_of(stage.gpus[0])
        if shares and shares[-1].node == node:
            last = shares[-1]
            shares[-1] = NodeShare(node, last.rank, last.gpus + tuple(stage.gpus), last.gpu_type)
        else:
            shares.append(NodeShare(node, len(shares), tuple(stage.gpus), gpu_type))
    return shares


def replica_problems(
    replica: ReplicaPlan, connector: Connector, model: launchability.ModelShape | None = None
) -> list[str]:
    """Why vLLM could not run this replica as planned (empty when it can): the planner's launch rules.
    With the model's shape (from the catalogue) the head-count, layer and KV-layout rules apply too."""
    stages = [(stage.gpus, stage.layers) for stage in replica.stages]
    problems = launchability.record_problems(replica.tp, replica.pp, [len(g) for g, _ in stages], replica.gpu_types)
    if not problems:
        bad_ids = [launchability.gpu_id_problem(g) for gpus, _ in stages for g in gpus]
        problems = [launchability.Problem("", text) for text in bad_ids if text is not None]
    if not problems:
        problems = launchability.layout_problems(stages, role=replica.role, connector=connector, model=model)
    if (batch := launchability.pipeline_batch_problem(replica.pp, replica.engine.max_num_seqs)) is not None:
        problems.append(launchability.Problem(".engine", batch))
    return [problem.at(f"replica {replica.id}") for problem in problems]


def catalogue_model(plan: Plan) -> launchability.ModelShape | None:
    """The plan's model from the shipped catalogue (None for a model only a cluster's config.json knew:
    the planner checked its shape-dependent rules when it solved)."""
    from planner.inputs.catalog import load_catalog

    return load_catalog().models.get(plan.model)


def plan_problems(plan: Plan, connector: Connector, model: launchability.ModelShape | None = None) -> list[str]:
    """Every reason the plan cannot be launched with `connector`, listed together."""
    problems = [p for r in ordered(plan) for p in replica_problems(r, connector, model)]
    kv_heads = model.kv_heads if model is not None else None
    ids = {r.id: r for r in plan.replicas}
    for route in plan.routes:
        source, target = ids.get(route.source), ids.get(route.target)
        if source is None or target is None:
            missing = route.source if source is None else route.target
            problems.append(f"route {route.source} → {route.target}: no replica {missing} in the plan.")
        elif (problem := launchability.route_roles_problem(source.role, target.role)) is not None:
            problems.append(f"route {route.source} → {route.target} {problem}")
        elif (problem := launchability.route_problem(source.tp, target.tp, connector, kv_heads)) is not None:
            problems.append(f"route {route.source} → {route.target}: {problem}")
    if (twice := launchability.shared_gpus(r.gpus for r in plan.replicas)) is not None:
        problems.append(twice)
    if (problem := launchability.connector_problem((r.role for r in plan.replicas), connector)) is not None:
        problems.append(problem)
    if not PlannedRouting.of(plan).routes_traffic:
        problems.append(NO_TRAFFIC)
    return problems


def value_problem(what: str, value: str) -> str | None:
    """Why `value` may not become an argv value or env value (None when it may)."""
    if not value:
        return f"{what} is empty."
    if value.startswith("-"):
        return f"{what} {value!r} starts with '-', so vLLM would read it as a flag."
    if CONTROL.search(value):
        return f"{what} {value!r} holds a control character."
    return None


def input_problems(plan: Plan, options: EngineOptions) -> list[str]:
    """Every string from the plan or the command line that would land in an engine's argv or env, checked."""
    values = [("the model path", options.model), ("the model name", options.served_name)]
    values += [(f"replica id of {r.id!r}", r.id) for r in plan.replicas]
    values += [(f"GPU type of replica {r.id}", t) for r in plan.replicas for t in r.gpu_types]
    values += [(f"--env {key}", value) for key, value in options.env]
    problems = [p for what, value in values if (p := value_problem(what, value))]
    for key, _ in options.env:
        if not ENV_NAME.fullmatch(key):
            problems.append(f"--env {key!r}: not a variable name (letters, digits, '_').")
        elif key in LAUNCHER_ENV:
            problems.append(f"--env {key}: the launcher sets this variable itself, from the plan.")
    if options.attention_backend is not None and not BACKEND_NAME.fullmatch(options.attention_backend):
        problems.append(f"--attention-backend {options.attention_backend!r}: expected a vLLM name like FLASH_ATTN.")
    for arg in options.extra_args:
        if CONTROL.search(arg):
            problems.append(f"--engine-arg {arg!r} holds a control character.")
    return problems


def kv_transfer_config(replica: ReplicaPlan, connector: Connector) -> str | None:
    """The `--kv-transfer-config` JSON for a disaggregated replica; None for colocated ones."""
    if connector == "none" or replica.role == "colocated":
        return None
    config = {"kv_connector": CONNECTOR_CLASS[connector], "kv_role": KV_ROLE[replica.role], "engine_id": replica.id}
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Ports:
    """A replica's ports: HTTP, its block of tp×pp NIXL side-channel ports, its torch.distributed rendezvous."""

    api: int
    side_channel: int
    side_channels: int
    master: int


def assign_ports(replicas: Sequence[ReplicaPlan], options: EngineOptions, taken: Sequence[Ports] = ()) -> list[Ports]:
    """Ports for `replicas` in order, counting up from the options' bases and skipping those `taken` (replicas
    already running, for `hexlaunch apply`); with nothing taken, replica i gets api_port + i."""
    api = {t.api for t in taken}
    master = {t.master for t in taken}
    side = [(t.side_channel, t.side_channel + t.side_channels) for t in taken]
    out, next_api, next_master, next_side = [], options.api_port, options.master_port, options.side_channel_port
    for replica in replicas:
        while next_api in api:
            next_api += 1
        while next_master in master:
            next_master += 1
        block = replica.tp * replica.pp
        while any(start < next_side + block and next_side < end for start, end in side):
            next_side += 1
        out.append(Ports(next_api, next_side, block, next_master))
        next_api, next_master, next_side = next_api + 1, next_master + 1, next_side + block
    return out


def replica_launch(
    replica: ReplicaPlan, ports: Ports, options: EngineOptions, dtype: str, hosts: Mapping[str, str]
) -> ReplicaLaunch:
    """The processes of one replica on its ports."""
    shares = node_shares(replica)
    host = hosts.get(shares[0].node, shares[0].node)
    port, side_channel_port = ports.api, ports.side_channel
    common = [
        "--served-model-name",
        options.served_name,
        "--tensor-parallel-size",
        str(replica.tp),
        "--pipeline-parallel-size",
        str(replica.pp),
        "--distributed-executor-backend",
        "mp",
        "--max-num-seqs",
        str(replica.engine.max_num_seqs),
        "--max-num-batched-tokens",
        str(replica.engine.max_num_batched_tokens),
        "--max-model-len",
        str(replica.engine.max_model_len),
        "--gpu-memory-utilization",
        f"{replica.engine.gpu_memory_utilization:g}",
        *DTYPE_ARGS[dtype],
    ]
    if options.attention_backend is not None:
        common += ["--attention-backend", options.attention_backend]
    kv_config = kv_transfer_config(replica, options.connector)
    if kv_config is not None:
        common += ["--kv-transfer-config", kv_config]
    processes = []
    for share in shares:
        share_host = hosts.get(share.node, share.node)
        argv = [*options.engine_cmd, "serve", options.model]
        if share.rank == 0:
            argv += ["--host", share_host, "--port", str(port)]
        argv += common
        if len(shares) > 1:
            argv += ["--nnodes", str(len(shares)), "--node-rank", str(share.rank), "--master-addr", host]
            argv += ["--master-port", str(ports.master)]
            if share.rank > 0:
                argv.append("--headless")
        argv += options.extra_args
        env = dict(options.env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_index(g) for g in share.gpus)
        env[SECRET_ENV] = SECRET_PLACEHOLDER  # the launcher puts the real one in when it starts the process
        if replica.pp > 1:
            env["VLLM_PP_LAYER_PARTITION"] = ",".join(str(s.layers[1] - s.layers[0]) for s in replica.stages)
        if len(shares) > 1:
            env["VLLM_HOST_IP"] = share_host
        if options.connector == "nixl" and kv_config is not None:
            env["VLLM_NIXL_SIDE_CHANNEL_HOST"] = share_host
            env["VLLM_NIXL_SIDE_CHANNEL_PORT"] = str(side_channel_port)
        processes.append(
            Process(replica.id, replica.role, share.node, share.rank, share.gpus, share.gpu_type, tuple(argv), env)
        )
    return ReplicaLaunch(replica, host, ports, tuple(processes))


def build_launches(
    plan: Plan,
    options: EngineOptions,
    hosts: Mapping[str, str] | None = None,
    *,
    only: Collection[str] | None = None,
    taken: Sequence[Ports] = (),
) -> list[ReplicaLaunch]:
    """Every replica's processes (or those with ids in `only`, on ports not `taken`). `hosts` maps plan node →
    address (default: the node name itself).

    Raises nothing; call `plan_problems` first (the CLI refuses to start when it lists anything).
    """
    replicas = [r for r in ordered(plan) if only is None or r.id in only]
    ports = assign_ports(replicas, options, taken)
    return [replica_launch(r, p, options, plan.dtype, hosts or {}) for r, p in zip(replicas, ports, strict=True)]
