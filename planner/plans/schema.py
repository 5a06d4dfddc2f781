"""plan.yaml: the planner's output, read by `hexplan` commands and by the launcher.

Why a strict, versioned schema: plans live in git and are diffed by CI, and the launcher
trusts their layouts. Writing is deterministic (sorted keys, rounded floats, replicas and
routes sorted by id), so the same input and seed give a byte-identical file.

Fields added after the first release (the SLO, goodput, roles, verification, per-replica reasons) are
left out of the file when they hold their default (no SLO, disaggregated roles, not verified), so a plan
solved as HexGen-2 was — disaggregated, without an SLO — is byte-identical to what earlier versions wrote.

A *draft* is a plan file without figures (no `summary`): replicas with id, role, gpus, tp, pp and
stages, written by hand or by a script. Only evaluation reads drafts; it computes every figure and
the routes (from the max-flow), giving a complete Plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from planner.types import Connector, Dtype, GpuId, Objective, Role, RolesMode, Strict
from planner.yamlio import dump_yaml, load_yaml, validate, write_atomic

SCHEMA_VERSION = 1


class StagePlan(Strict):
    gpus: list[GpuId] = Field(min_length=1, description="node/index of each GPU in this stage (its TP group)")
    layers: tuple[int, int] = Field(description="[first, end) layer range held by this stage")


class EnginePlan(Strict):
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    max_model_len: int = Field(gt=0)
    gpu_memory_utilization: float = Field(gt=0, le=1)


class ReplicaPlan(Strict):
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
    goodput_rps: float | None = Field(None, ge=0, description="requests/s it sustains alone within the plan's SLO")
    reason: str | None = Field(None, description="why the replica has its role")


class RoutePlan(Strict):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    rate_rps: float = Field(ge=0)
    capacity_rps: float = Field(ge=0, description="what the links between the two replicas could carry")
    kv_gbps: float = Field(ge=0, description="KV-cache traffic at rate_rps, Gbit/s")


class Summary(Strict):
    throughput_rps: float
    goodput_rps: float | None = Field(
        None, description="requests/s with ≥ the SLO's attainment meeting it (absent: no SLO, goodput undefined)"
    )
    output_tokens_per_s: float
    ttft_s: float
    tpot_s: float
    cost_per_hour_usd: float
    usd_per_million_output_tokens: float
    bottleneck: str
    gpus_used: int


class Verification(Strict):
    """The verify step: candidates simulated and the one kept (planner.reference.verify)."""

    metric: Literal["goodput", "throughput"] = Field(description="simulated goodput within the SLO, else saturated")
    candidates: int = Field(ge=1, description="plans simulated")
    chosen: str = Field(description="which candidate was kept: 'search', 'search alternative N' or a baseline")
    simulated_rps: float = Field(ge=0, description="the chosen plan's simulated metric, requests/s")
    search_best_rps: float = Field(ge=0, description="the simulated metric of the search's own best plan")
    duration_s: float = Field(gt=0, description="simulated seconds per run")


class SloPlan(Strict):
    """The SLO the plan was solved for (plan.yaml `slo`); the default SLO of every command reading the plan."""

    ttft_s: float | None = Field(None, gt=0, description="time to first token, KV transfer included")
    tpot_s: float | None = Field(None, gt=0, description="time per output token")
    attainment: float = Field(0.9, gt=0, le=1, description="share of requests that must meet both")


class SolverInfo(Strict):
    name: str = "hexgen2"
    version: str
    seed: int = 0
    objective: Objective = "throughput"
    connector: Connector = "nixl"
    k_tried: list[int] = Field(default=[])
    iterations: int = 0
    converged: bool = Field(True, description="refinement stopped because no move improved (not the time limit)")
    colocated: bool = Field(False, description="colocated (prefill + decode) replicas were allowed (--roles)")
    roles: RolesMode = Field("disaggregated", description="roles the search could give (--roles)")
    verification: Verification | None = Field(None, description="how the plan was chosen by simulation (--verify)")
    time_limit_s: float | None = None
    baseline: str | None = Field(None, description="plan file this one was re-planned from (--baseline)")
    moved_gpus: int | None = Field(None, description="GPUs of the baseline plan that changed replica or role")


class ClusterRef(Strict):
    file: str
    sha256: str


class CalibrationRef(Strict):
    """A calibration the plan's figures came from (README: calibration files); `hexplan check` compares them."""

    kind: Literal["gpu", "allreduce"]
    key: str = Field(description="GPU type (kind gpu) or intra-node link (kind allreduce)")
    id: str = Field(description="the calibration's id; empty when uncalibrated")
    sha256: str = Field(description="sha256 of the calibration file; empty when uncalibrated")
    status: Literal["calibrated", "fallback", "uncalibrated"]
    borrowed_from: str = Field("", description="fallback: the GPU type or link whose calibration is used")


class Plan(Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: str
    model_path: str = Field("", description="what vLLM loads: the model's Hugging Face id (from the catalogue)")
    dtype: Dtype
    cluster: ClusterRef
    solver: SolverInfo
    summary: Summary
    replicas: list[ReplicaPlan]
    routes: list[RoutePlan]
    cost_calibrations: list[CalibrationRef] = Field(default=[], description="cost-model calibrations the figures use")
    slo: SloPlan | None = Field(None, description="the SLO the plan was solved for; absent: none")


class DraftReplica(Strict):
    """A replica as a person writes it: role and layout; figures, if present, are ignored."""

    id: str
    role: Role
    gpus: list[GpuId] = Field(min_length=1)
    tp: int = Field(gt=0)
    pp: int = Field(gt=0)
    stages: list[StagePlan] = Field(min_length=1)
    gpu_types: list[str] | None = None
    capacity_rps: float | None = None
    latency_s: float | None = None
    engine: EnginePlan | None = None
    goodput_rps: float | None = None
    reason: str | None = None


class DraftPlan(Strict):
    """A plan file without a summary (see the module docstring); `solver` defaults to a hand-written plan."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model: str | None = None
    model_path: str | None = None
    dtype: Dtype | None = None
    cluster: ClusterRef | None = None
    solver: SolverInfo | None = None
    replicas: list[DraftReplica] = Field(min_length=1)
    routes: list[RoutePlan] = Field(default=[])
    cost_calibrations: list[CalibrationRef] | None = None
    slo: SloPlan | None = None


def round_floats(value: object) -> object:
    """Round floats to 6 significant digits so tiny float noise never shows up in a diff."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v) for v in value]
    return value


# Fields written only when they differ from these defaults (see the module docstring).
OMITTED_AT_DEFAULT = {
    (): {"slo": None},
    ("summary",): {"goodput_rps": None},
    ("solver",): {"roles": "disaggregated", "verification": None},
    ("replicas",): {"goodput_rps": None, "reason": None},
}


def _omit_defaults(data: dict) -> dict:
    for path, defaults in OMITTED_AT_DEFAULT.items():
        records = [data] if not path else data[path[0]] if isinstance(data[path[0]], list) else [data[path[0]]]
        for record in records:
            for key, default in defaults.items():
                if key in record and record[key] == default:
                    del record[key]
    return data


def plan_to_yaml(plan: Plan) -> str:
    ordered = plan.model_copy(
        update={
            "replicas": sorted(plan.replicas, key=lambda r: (r.role, r.id)),
            "routes": sorted(plan.routes, key=lambda r: (r.source, r.target)),
        }
    )
    return dump_yaml(round_floats(_omit_defaults(ordered.model_dump(mode="json", by_alias=True))))


def write_plan(plan: Plan, path: Path) -> None:
    write_atomic(path, plan_to_yaml(plan))


def read_plan(path: Path) -> Plan:
    return validate(Plan, load_yaml(path, what="plan file"), path)


def read_plan_or_draft(path: Path) -> Plan | DraftPlan:
    """A complete plan, or a draft when the file has no `summary` (for evaluation only)."""
    data = load_yaml(path, what="plan file")
    draft = isinstance(data, dict) and "summary" not in data
    return validate(DraftPlan if draft else Plan, data, path)
