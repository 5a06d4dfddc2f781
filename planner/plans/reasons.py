"""Why each replica of a plan has its role: one short line per replica, from the cost model.

Why: a mixed plan (prefill, decode and colocated replicas side by side) is only trustworthy if an operator
can see what decided each role. The search decides by max-flow over the whole plan; the line states the
local evidence: what the replica serves in its role and what the same GPUs would serve in each other role
the search could give them — capacities within the SLO when there is one — and, for a decode replica that
could have been colocated, the batch a TPOT SLO leaves a colocated engine whose steps carry prefill chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment
from planner.scheduler.layouts import best_assessment, group_shape, node_parts
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.scoring import ROLES
from planner.types import Role, RolesMode
from planner.units import format_duration


def _serves(cluster: Cluster, a: Assessment) -> str:
    rate = a.goodput_rps if cluster.slo is not None else a.capacity_rps
    return f"{rate or 0.0:.2f} req/s{' within the SLO' if cluster.slo is not None else ''}"


def _alternative(cluster: Cluster, a: Assessment, other: Assessment) -> str:
    tpot = cluster.slo_tpot
    if a.role == "decode" and other.role == "colocated" and tpot is not None:
        return (
            f"the TPOT SLO {format_duration(tpot)} caps it at batch {other.engine.max_num_seqs} as colocated "
            f"(prefill chunks stretch its steps): {_serves(cluster, other)}"
        )
    return f"as {other.role} {_serves(cluster, other)} (batch {other.engine.max_num_seqs})"


def _cannot(cluster: Cluster, a: Assessment, role: Role, fits_without_slo: bool) -> str:
    """Why the same GPUs cannot take `role`: too little memory, or not within the SLO (and which part)."""
    if cluster.slo is None or not fits_without_slo:
        return f"cannot serve as {role}"
    tpot = cluster.slo_tpot
    if role == "colocated" and tpot is not None:
        return (
            f"the TPOT SLO {format_duration(tpot)} leaves a colocated engine too little of each step for prefill "
            "chunks: it cannot meet the SLO as colocated"
        )
    return f"it cannot meet the SLO ({cluster.slo.describe()}) as {role}"


def role_reasons(
    cluster: Cluster, replicas: Sequence[Assessment], flow: FlowResult, roles: RolesMode, launchable: bool
) -> dict[str, str]:
    """replica id → 'decode: 4.10 req/s within the SLO at batch 64; the TPOT SLO 100ms caps it at batch 12 as
    colocated (…): 0.90 req/s within the SLO; carries 3.2 req/s of the plan'."""
    reasons = {}
    seen: dict[tuple[Role, tuple], Assessment | None] = {}  # by group shape: big plans repeat a few shapes
    for a in replicas:
        others: list[str] = []
        shape = group_shape(cluster, node_parts(cluster, a.layout.gpus))
        for role in ROLES[roles]:
            if role == a.role:
                continue
            if (role, shape) not in seen:
                seen[(role, shape)] = best_assessment(cluster, a.layout.gpus, role, launchable)
            other = seen[(role, shape)]
            if other is not None:
                others.append(_alternative(cluster, a, other))
            else:
                free = dataclasses.replace(cluster, slo=None) if cluster.slo is not None else cluster
                fits = best_assessment(free, a.layout.gpus, role, launchable) is not None
                others.append(_cannot(cluster, a, role, fits))
        carried = flow.replica_flow.get(a.id, 0.0)
        head = f"{a.role}: {_serves(cluster, a)} at batch {a.engine.max_num_seqs}"
        reasons[a.id] = "; ".join([head, *others, f"carries {carried:.2f} req/s of the plan"])
    return reasons
