"""Turn assessed replicas and their max-flow into a complete Plan: routes, capacities, summary.

Why one place: the search's result and a hand-edited plan (re-evaluated by planner.plans.checks)
become plan.yaml through the same code, so every figure a plan shows comes from the cost model and
the max-flow, never from what a file claimed. Also the way back: a plan's replicas as layouts and as
the engines re-planning anchors to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from planner import __version__
from planner.costs.kvtransfer import kv_bytes_per_request, kv_transfer_time
from planner.costs.layout import Layout, Stage
from planner.costs.usage import calibrations_used
from planner.inputs.problem import Cluster, Slo
from planner.plans.reasons import role_reasons
from planner.plans.schema import (
    CalibrationRef,
    ClusterRef,
    EnginePlan,
    Plan,
    ReplicaPlan,
    RoutePlan,
    SloPlan,
    SolverInfo,
    StagePlan,
    Summary,
)
from planner.scheduler.assess import Assessment, route_capacity
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.network import plan_flow
from planner.scheduler.search import SearchFacts, SearchResult
from planner.scheduler.stability import LayoutKey, layout_key
from planner.types import Role


def solver_info(facts: SearchFacts, *, baseline: str | None = None) -> SolverInfo:
    """plan.yaml's `solver` for a search that ran as `facts` (re-planned from `baseline`, a plan file)."""
    return SolverInfo(
        version=__version__,
        seed=facts.seed,
        objective=facts.objective,
        connector=facts.connector,
        k_tried=list(facts.k_tried),
        iterations=facts.iterations,
        converged=facts.converged,
        colocated=facts.roles != "disaggregated",
        roles=facts.roles,
        time_limit_s=facts.time_limit_s,
        baseline=baseline,
        moved_gpus=facts.moved_gpus,
    )


def plan_from_search(cluster: Cluster, result: SearchResult, *, baseline: str | None = None) -> Plan:
    """The plan of a search's result."""
    solver = solver_info(result.facts, baseline=baseline)
    return assemble(cluster, result.replicas, solver, result.flow, result.goodput_flow)


def slo_plan(slo: Slo | None) -> SloPlan | None:
    return SloPlan(ttft_s=slo.ttft, tpot_s=slo.tpot, attainment=slo.attainment) if slo is not None else None


def replica_plan(cluster: Cluster, a: Assessment, reason: str | None = None) -> ReplicaPlan:
    return ReplicaPlan(
        id=a.id,
        role=a.role,
        gpu_types=[cluster.gpu_by_id[s.gpus[0]].gpu.key for s in a.layout.stages],
        gpus=list(a.layout.gpus),
        tp=a.layout.tp,
        pp=a.layout.pp,
        stages=[StagePlan(gpus=list(s.gpus), layers=(s.layer_start, s.layer_end)) for s in a.layout.stages],
        capacity_rps=a.capacity_rps,
        latency_s=a.latency_s,
        engine=EnginePlan(**asdict(a.engine)),
        goodput_rps=a.goodput_rps,
        reason=reason,
    )


def summarise(
    cluster: Cluster, assessments: Sequence[Assessment], flow: FlowResult, goodput_flow: FlowResult | None = None
) -> Summary:
    """Throughput = the saturated flow value, goodput = the flow on capacities within the SLO; TTFT and
    TPOT are means over the routed flow (the goodput flow when there is an SLO), unloaded; the bottleneck
    is that flow's."""
    routed = goodput_flow or flow
    by_id = {a.id: a for a in assessments}
    ttft = tpot = 0.0
    for (p, d), rate in routed.routes.items():
        ttft += rate * (by_id[p].latency_s + kv_transfer_time(cluster, by_id[p].layout, by_id[d].layout))
        tpot += rate * by_id[d].latency_s
    for a in assessments:
        if a.role == "colocated":
            rate = routed.replica_flow.get(a.id, 0.0)
            ttft += rate * (a.ttft_s if a.ttft_s is not None else 0.0)
            tpot += rate * a.latency_s
    value, weight = flow.value, routed.value
    gpus = [g for a in assessments for g in a.layout.gpus]
    cost = cluster.price_per_hour(gpus)
    tokens_per_s = value * cluster.workload.output.mean
    return Summary(
        throughput_rps=value,
        goodput_rps=goodput_flow.value if goodput_flow is not None else None,
        output_tokens_per_s=tokens_per_s,
        ttft_s=ttft / weight if weight > 0 else 0.0,
        tpot_s=tpot / weight if weight > 0 else 0.0,
        cost_per_hour_usd=cost,
        usd_per_million_output_tokens=cost / (tokens_per_s * 3600) * 1e6 if tokens_per_s > 0 else 0.0,
        bottleneck=routed.bottleneck,
        gpus_used=len(gpus),
    )


def assemble(
    cluster: Cluster,
    assessments: Sequence[Assessment],
    solver: SolverInfo,
    flow: FlowResult | None = None,
    goodput_flow: FlowResult | None = None,
) -> Plan:
    """The Plan of these replicas: routes from the max-flow (solved here unless given; with an SLO, the flow
    on capacities within it, which the router then follows), the summary, and why each replica has its role
    (except for plans in the first release's format: disaggregated, without an SLO)."""
    launchable = solver.connector != "none"

    def capacity(p: Assessment, d: Assessment) -> float:
        return route_capacity(cluster, p, d, launchable)

    if flow is None:
        flow = plan_flow(cluster, assessments, launchable=launchable)
    if goodput_flow is None and cluster.slo is not None:
        goodput_flow = plan_flow(cluster, assessments, launchable=launchable, goodput=True)
    routed = goodput_flow or flow
    by_id = {a.id: a for a in assessments}
    kv_bits = kv_bytes_per_request(cluster) * 8 / 1e9
    routes = [
        RoutePlan(source=p, target=d, rate_rps=rate, capacity_rps=capacity(by_id[p], by_id[d]), kv_gbps=rate * kv_bits)
        for (p, d), rate in sorted(routed.routes.items())
    ]
    explain = cluster.slo is not None or solver.roles != "disaggregated"
    reasons = role_reasons(cluster, assessments, routed, solver.roles, launchable) if explain else {}
    return Plan(
        model=cluster.model.name,
        model_path=cluster.model.hf_id,
        dtype=cluster.dtype,
        cluster=ClusterRef(file=cluster.source.as_posix(), sha256=cluster.sha256),
        solver=solver,
        summary=summarise(cluster, assessments, flow, goodput_flow),
        replicas=[replica_plan(cluster, a, reasons.get(a.id)) for a in assessments],
        routes=routes,
        cost_calibrations=[
            CalibrationRef(**asdict(u)) for u in calibrations_used(cluster, (a.layout for a in assessments))
        ],
        slo=slo_plan(cluster.slo),
    )


def layout_of(replica: ReplicaPlan) -> Layout:
    """A plan replica's stages as the cost model's Layout."""
    return Layout(tuple(Stage(tuple(s.gpus), s.layers[0], s.layers[1]) for s in replica.stages))


def running_engines(plan: Plan) -> list[tuple[tuple[str, ...], Role, LayoutKey]]:
    """A plan's engines as re-planning anchors them: (GPU group, role, layout key), so that a replica
    kept on the same GPUs but with another TP, PP or layer split counts as moved (scheduler.stability)."""
    return [(tuple(r.gpus), r.role, layout_key((s.gpus, *s.layers) for s in r.stages)) for r in plan.replicas]
