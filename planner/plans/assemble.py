"""Turn replica layouts into a complete, honest Plan: capacities, routes, max-flow, summary.

Why one place: the solver's output and a hand-edited plan are scored by the same code, so
`evaluate(plan, cluster)` recomputes every figure from the layouts and never trusts the
numbers a file claims.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

from planner import __version__
from planner.costs.replica import (
    DEFAULT_BATCHED_TOKENS,
    Layout,
    Stage,
    decode_perf,
    kv_bytes_per_request,
    kv_transfer_capacity,
    kv_transfer_time,
    prefill_perf,
    valid_tp,
)
from planner.errors import InputError
from planner.inputs.problem import Cluster
from planner.plans.schema import (
    ClusterRef,
    EnginePlan,
    Plan,
    ReplicaPlan,
    Role,
    RoutePlan,
    SolverInfo,
    StagePlan,
    Summary,
    replica_id,
)
from planner.scheduler.kvnet import kv_network, tp_compatible
from planner.scheduler.maxflow import FlowResult, max_flow


class PlanError(InputError):
    """A plan that does not fit the cluster it is evaluated against."""


@dataclass(frozen=True)
class Assessment:
    """A replica's standalone performance under the cluster's workload."""

    role: Role
    layout: Layout
    capacity_rps: float
    latency_s: float
    engine: EnginePlan

    @cached_property
    def id(self) -> str:
        return replica_id(self.role, self.layout.gpus)


def max_model_len(cluster: Cluster) -> int:
    """Smallest power of two that holds a long request (p99.9 prompt + output), capped by the model."""
    need = cluster.workload.prompt.upper + cluster.workload.output.upper
    return min(cluster.model.max_position_embeddings, 2 ** math.ceil(math.log2(max(need, 2))))


def assess(cluster: Cluster, role: Role, layout: Layout) -> Assessment | None:
    """Performance of one replica in one role, or None when the model (and its KV working set) does not fit."""
    util = cluster.memory_utilization
    if role == "prefill":
        p = prefill_perf(cluster, layout)
        if p is None:
            return None
        engine = EnginePlan(
            max_num_seqs=p.batch_seqs,
            max_num_batched_tokens=p.max_num_batched_tokens,
            max_model_len=max_model_len(cluster),
            gpu_memory_utilization=util,
        )
        return Assessment(role, layout, p.capacity_rps, p.latency_s, engine)
    d = decode_perf(cluster, layout, cluster.slo_tpot)
    if d is None:
        return None
    engine = EnginePlan(
        max_num_seqs=d.batch,
        max_num_batched_tokens=DEFAULT_BATCHED_TOKENS,
        max_model_len=max_model_len(cluster),
        gpu_memory_utilization=util,
    )
    if role == "decode":
        return Assessment(role, layout, d.capacity_rps, d.tpot_s, engine)
    p = prefill_perf(cluster, layout)
    if p is None:
        return None
    # Time sharing: each request costs 1/P of the replica's time in prefill and 1/D in decode; at rate c
    # decode steps wait behind prefills c/P of the time, so TPOT = step / (1 − c/P). A TPOT SLO caps c.
    capacity = 1.0 / (1.0 / p.capacity_rps + 1.0 / d.capacity_rps)
    if cluster.slo_tpot is not None:
        capacity = min(capacity, p.capacity_rps * (1.0 - d.tpot_s / cluster.slo_tpot))
        if capacity <= 0:
            return None
    prefill_share = capacity / p.capacity_rps
    return Assessment(role, layout, capacity, d.tpot_s / max(1.0 - prefill_share, 1e-6), engine)


def route_capacity(cluster: Cluster, prefill: Assessment, decode: Assessment, launchable: bool) -> float:
    """Requests/s of KV caches the links between two replicas carry on their own; 0 when the
    connector cannot join them (TP sizes that do not divide)."""
    if launchable and not tp_compatible(prefill.layout.tp, decode.layout.tp):
        return 0.0
    return kv_transfer_capacity(cluster, prefill.layout, decode.layout)


def assemble(cluster: Cluster, assessments: Sequence[Assessment], solver: SolverInfo) -> tuple[Plan, FlowResult]:
    """Max-flow over the assessed replicas, then the Plan with routes and summary."""
    launchable = solver.connector != "none"
    by_role = {role: [a for a in assessments if a.role == role] for role in ("prefill", "decode", "colocated")}
    by_id = {a.id: a for a in assessments}
    network = kv_network(
        cluster,
        by_role["prefill"],
        by_role["decode"],
        lambda p, d: route_capacity(cluster, p, d, launchable),
        launchable=launchable,
    )
    flow = max_flow(
        {a.id: a.capacity_rps for a in by_role["prefill"]},
        {a.id: a.capacity_rps for a in by_role["decode"]},
        network.direct,
        {a.id: a.capacity_rps for a in by_role["colocated"]},
        hubs=network.hubs,
        hub_arcs=network.hub_arcs,
    )
    kv_bits = kv_bytes_per_request(cluster) * 8 / 1e9
    routes = [
        RoutePlan(
            source=p,
            target=d,
            rate_rps=rate,
            capacity_rps=route_capacity(cluster, by_id[p], by_id[d], launchable),
            kv_gbps=rate * kv_bits,
        )
        for (p, d), rate in sorted(flow.routes.items())
    ]
    ttft = tpot = 0.0
    for (p, d), rate in flow.routes.items():
        ttft += rate * (by_id[p].latency_s + kv_transfer_time(cluster, by_id[p].layout, by_id[d].layout))
        tpot += rate * by_id[d].latency_s
    for a in by_role["colocated"]:
        rate = flow.replica_flow[a.id]
        prefill = prefill_perf(cluster, a.layout)
        ttft += rate * (prefill.latency_s if prefill else 0.0)
        tpot += rate * a.latency_s
    value = flow.value
    gpus = [g for a in assessments for g in a.layout.gpus]
    cost = cluster.price_per_hour(gpus)
    tokens_per_s = value * cluster.workload.output.mean
    summary = Summary(
        throughput_rps=value,
        output_tokens_per_s=tokens_per_s,
        ttft_s=ttft / value if value > 0 else 0.0,
        tpot_s=tpot / value if value > 0 else 0.0,
        cost_per_hour_usd=cost,
        usd_per_million_output_tokens=cost / (tokens_per_s * 3600) * 1e6 if tokens_per_s > 0 else 0.0,
        bottleneck=flow.bottleneck,
        gpus_used=len(gpus),
    )
    replicas = [
        ReplicaPlan(
            id=a.id,
            role=a.role,
            gpu_types=[cluster.gpu_by_id[s.gpus[0]].gpu.key for s in a.layout.stages],
            gpus=list(a.layout.gpus),
            tp=a.layout.tp,
            pp=a.layout.pp,
            stages=[StagePlan(gpus=list(s.gpus), layers=(s.layer_start, s.layer_end)) for s in a.layout.stages],
            capacity_rps=a.capacity_rps,
            latency_s=a.latency_s,
            engine=a.engine,
        )
        for a in assessments
    ]
    plan = Plan(
        model=cluster.model.name,
        model_path=cluster.model.hf_id,
        dtype=cluster.dtype,
        cluster=ClusterRef(file=cluster.source.as_posix(), sha256=cluster.sha256),
        solver=solver,
        summary=summary,
        replicas=replicas,
        routes=routes,
    )
    return plan, flow


def layout_of(replica: ReplicaPlan) -> Layout:
    return Layout(tuple(Stage(tuple(s.gpus), s.layers[0], s.layers[1]) for s in replica.stages))


def check_layout(cluster: Cluster, role: Role, layout: Layout, where: str, launchable: bool) -> None:
    """Raise PlanError unless the layout is one the cost model and the launcher can run."""
    layers = cluster.model.layers
    expected = 0
    for i, stage in enumerate(layout.stages):
        unknown = [g for g in stage.gpus if g not in cluster.gpu_by_id]
        if unknown:
            raise PlanError(f"{where}.stages[{i}]: GPU(s) {', '.join(unknown)} are not in the cluster.")
        nodes = {cluster.gpu_by_id[g].node for g in stage.gpus}
        if len(nodes) > 1:
            raise PlanError(f"{where}.stages[{i}]: a TP group must sit on one node, got {', '.join(sorted(nodes))}.")
        if stage.layer_start != expected or stage.layer_end <= stage.layer_start:
            raise PlanError(
                f"{where}.stages[{i}].layers: expected a range starting at layer {expected}, "
                f"got [{stage.layer_start}, {stage.layer_end})."
            )
        if stage.tp != layout.tp:
            raise PlanError(f"{where}.stages[{i}]: every stage needs the same TP size ({layout.tp}), got {stage.tp}.")
        if not valid_tp(cluster, stage.tp):
            model = cluster.model
            raise PlanError(
                f"{where}.stages[{i}]: TP {stage.tp} must divide the model's {model.heads} attention heads and "
                f"divide, or be a multiple of, its {model.kv_heads} KV heads."
            )
        expected = stage.layer_end
    if expected != layers:
        raise PlanError(f"{where}: stages cover layers [0, {expected}) but the model has {layers}.")
    stage_nodes = [cluster.gpu_by_id[s.gpus[0]].node for s in layout.stages]
    if launchable and any(a != b and b in stage_nodes[:i] for i, (a, b) in enumerate(pairwise(stage_nodes))):
        raise PlanError(f"{where}: the stages on one node must be consecutive (node order {', '.join(stage_nodes)}).")
    per_node = Counter(cluster.gpu_by_id[g].node for g in layout.gpus)
    if launchable and len(set(per_node.values())) > 1:
        counts = ", ".join(f"{node}: {n}" for node, n in sorted(per_node.items()))
        raise PlanError(f"{where}: a replica across nodes needs the same number of GPUs on each node ({counts}).")
    if launchable and role == "decode" and layout.pp > 1:
        raise PlanError(f"{where}: a decode replica with PP={layout.pp}; NIXL KV transfer needs decode PP = 1.")


def evaluate(plan: Plan, cluster: Cluster) -> Plan:
    """Recompute every figure of `plan` on `cluster`; raise PlanError if the plan cannot run there."""
    launchable = plan.solver.connector != "none"
    used = Counter(g for r in plan.replicas for g in r.gpus)
    twice = sorted(g for g, n in used.items() if n > 1)
    if twice:
        raise PlanError(f"plan uses GPU(s) {', '.join(twice)} in more than one replica.")
    if plan.model != cluster.model.name:
        raise PlanError(f"plan is for model {plan.model} but the cluster file serves {cluster.model.name}.")
    assessments = []
    for i, replica in enumerate(plan.replicas):
        layout = layout_of(replica)
        where = f"replicas[{i}] ({replica.id})"
        check_layout(cluster, replica.role, layout, where, launchable)
        if sorted(replica.gpus) != sorted(layout.gpus):
            raise PlanError(f"{where}: gpus does not list the same GPUs as its stages.")
        assessment = assess(cluster, replica.role, layout)
        if assessment is None:
            raise PlanError(f"{where}: the model and its KV working set do not fit in these GPUs' memory.")
        assessments.append(assessment)
    solver = plan.solver.model_copy(update={"version": plan.solver.version or __version__})
    evaluated, _ = assemble(cluster, assessments, solver)
    return evaluated
