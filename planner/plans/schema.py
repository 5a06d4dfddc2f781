"""plan.yaml: the planner's output, read by `hexplan` commands and by the launcher.

Why a strict, versioned schema: plans live in git and are diffed by CI, and the launcher
trusts their layouts. Writing is deterministic (sorted keys, rounded floats, replicas and
routes sorted by id), so the same input and seed give a byte-identical file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from planner.yamlio import dump_yaml, load_yaml, validate, write_atomic

SCHEMA_VERSION = 1
Role = Literal["prefill", "decode", "colocated"]
ROLE_PREFIX = {"prefill": "p", "decode": "d", "colocated": "c"}
Connector = Literal["nixl", "mooncake", "lmcache", "none"]
GpuId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[0-9]+$")]  # node/index


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StagePlan(_Strict):
    gpus: list[GpuId] = Field(min_length=1, description="node/index of each GPU in this stage (its TP group)")
    layers: tuple[int, int] = Field(description="[first, end) layer range held by this stage")


class EnginePlan(_Strict):
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    max_model_len: int = Field(gt=0)
    gpu_memory_utilization: float = Field(gt=0, le=1)


class ReplicaPlan(_Strict):
    id: str
    role: Role
    gpu_types: list[str] = Field(description="GPU type of each stage")
    gpus: list[GpuId] = Field(min_length=1)
    tp: int = Field(gt=0)
    pp: int = Field(gt=0)
    stages: list[StagePlan] = Field(min_length=1)
    capacity_rps: float = Field(ge=0, description="requests/s this replica sustains alone")
    latency_s: float = Field(ge=0, description="prefill: one prompt's latency; decode: time per output token")
    engine: EnginePlan


class RoutePlan(_Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    rate_rps: float = Field(ge=0)
    capacity_rps: float = Field(ge=0, description="what the links between the two replicas could carry")
    kv_gbps: float = Field(ge=0, description="KV-cache traffic at rate_rps, Gbit/s")


class Summary(_Strict):
    throughput_rps: float
    output_tokens_per_s: float
    ttft_s: float
    tpot_s: float
    cost_per_hour_usd: float
    usd_per_million_output_tokens: float
    bottleneck: str
    gpus_used: int


class SolverInfo(_Strict):
    name: str = "hexgen2"
    version: str
    seed: int = 0
    objective: Literal["throughput", "cost"] = "throughput"
    connector: Connector = "nixl"
    k_tried: list[int] = []
    iterations: int = 0
    converged: bool = Field(True, description="refinement stopped because no move improved (not the time limit)")
    colocated: bool = Field(False, description="colocated (prefill + decode) replicas were allowed (--colocated)")
    time_limit_s: float | None = None
    baseline: str | None = Field(None, description="plan file this one was re-planned from (--baseline)")
    moved_gpus: int | None = Field(None, description="GPUs of the baseline plan that changed replica or role")


class ClusterRef(_Strict):
    file: str
    sha256: str


class Plan(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: str
    model_path: str = Field("", description="what vLLM loads: the model's Hugging Face id (from the catalogue)")
    dtype: Literal["float16", "bfloat16", "fp8"]
    cluster: ClusterRef
    solver: SolverInfo
    summary: Summary
    replicas: list[ReplicaPlan]
    routes: list[RoutePlan]


def replica_id(role: str, gpus: list[str] | tuple[str, ...]) -> str:
    """Stable id from the role and the GPU set: unchanged replicas keep their ids across re-plans."""
    digest = hashlib.sha1(",".join(sorted(gpus)).encode()).hexdigest()[:6]
    return f"{ROLE_PREFIX[role]}-{sorted(gpus)[0].split('/')[0]}-{digest}"


def round_floats(value: object) -> object:
    """Round floats to 6 significant digits so tiny float noise never shows up in a diff."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v) for v in value]
    return value


def plan_to_yaml(plan: Plan) -> str:
    ordered = plan.model_copy(
        update={
            "replicas": sorted(plan.replicas, key=lambda r: (r.role, r.id)),
            "routes": sorted(plan.routes, key=lambda r: (r.source, r.target)),
        }
    )
    return dump_yaml(round_floats(ordered.model_dump(mode="json", by_alias=True)))


def write_plan(plan: Plan, path: Path) -> None:
    write_atomic(path, plan_to_yaml(plan))


def read_plan(path: Path) -> Plan:
    return validate(Plan, load_yaml(path, what="plan file"), path)
