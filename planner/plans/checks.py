"""Checks of a plan against a cluster: can it run there, what are its honest figures, is it still fresh.

`evaluate` recomputes every figure of a plan (or a draft) from its layouts, after checking them with
the launch rules of planner.scheduler.launchability, so a hand-edited plan gets honest numbers and a
broken one a PlanError naming the replica and field. `check_plan` compares the recorded plan with
the evaluated one (planner.plans.diff): that is how `hexplan check` tells fresh from stale.
"""

from __future__ import annotations

from planner import __version__
from planner.costs.layout import Layout
from planner.errors import PlanError
from planner.inputs.problem import Cluster
from planner.plans.assemble import assemble, layout_of
from planner.plans.diff import PlanDiff, diff_plans
from planner.plans.schema import DraftPlan, Plan, SolverInfo
from planner.scheduler.assess import assess
from planner.scheduler.launchability import (
    gpu_types_problem,
    has_connector,
    layout_problems,
    pipeline_batch_problem,
    shared_gpus,
)
from planner.types import Connector, Role

HAND_WRITTEN = "hand-written"  # solver name of a draft that names none


def check_layout(cluster: Cluster, role: Role, layout: Layout, where: str, connector: Connector) -> None:
    """Raise PlanError (the first problem) unless the cost model and the launcher can run the layout.

    A plan for connector "none" is a cost-model exercise: only the stage rules apply (launchability)."""
    problems = layout_problems(
        [(stage.gpus, (stage.layer_start, stage.layer_end)) for stage in layout.stages],
        role=role,
        connector=connector,
        launch=has_connector(connector),
        model=cluster.model,
        known_gpus=cluster.gpu_by_id,
    )
    if problems:
        raise PlanError(problems[0].at(where))


def evaluate(plan: Plan | DraftPlan, cluster: Cluster) -> Plan:
    """Recompute every figure of `plan` on `cluster`; raise PlanError if the plan cannot run there."""
    solver = plan.solver or SolverInfo(name=HAND_WRITTEN, version=__version__)
    if (twice := shared_gpus(r.gpus for r in plan.replicas)) is not None:
        raise PlanError(twice)
    if plan.model is not None and plan.model != cluster.model.name:
        raise PlanError(f"plan is for model {plan.model} but the cluster file serves {cluster.model.name}.")
    assessments = []
    for i, replica in enumerate(plan.replicas):
        layout = layout_of(replica)
        where = f"replicas[{i}] ({replica.id})"
        check_layout(cluster, replica.role, layout, where, solver.connector)
        if sorted(replica.gpus) != sorted(layout.gpus):
            raise PlanError(f"{where}: gpus does not list the same GPUs as its stages.")
        engine = replica.engine
        if engine is not None and (problem := pipeline_batch_problem(len(layout.stages), engine.max_num_seqs)):
            raise PlanError(f"{where}.engine: {problem}")
        assessment = assess(cluster, replica.role, layout)
        if assessment is None:
            raise PlanError(f"{where}: the model and its KV working set do not fit in these GPUs' memory.")
        assessments.append(assessment)
    return assemble(cluster, assessments, solver.model_copy(update={"version": solver.version or __version__}))


def check_gpu_types(plan: Plan, cluster: Cluster) -> None:
    """Raise PlanError when a replica was planned on a GPU type the cluster no longer has at that slot."""
    for i, r in enumerate(plan.replicas):
        where = f"replicas[{i}] ({r.id})"
        if (problem := gpu_types_problem(len(r.gpu_types), len(r.stages))) is not None:
            raise PlanError(problem.at(where))
        for stage, planned in zip(r.stages, r.gpu_types, strict=True):
            for g in stage.gpus:
                slot = cluster.gpu_by_id.get(g)
                if slot is not None and slot.gpu.key != planned:
                    raise PlanError(
                        f"{where}: planned on {planned} but {g} is a {slot.gpu.key} in the cluster.",
                        hint="re-solve for this cluster",
                    )


def calibration_changes(recorded: Plan, honest: Plan) -> list[str]:
    """What changed between the calibrations a plan recorded and those its evaluation uses now."""
    old = {(c.kind, c.key): c for c in recorded.cost_calibrations}
    new = {(c.kind, c.key): c for c in honest.cost_calibrations}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        before, now = old.get(key), new.get(key)
        label = f"{key[0]} calibration of {key[1]}"
        if before is None or now is None:
            changes.append(f"{label}: {'not recorded in the plan' if before is None else 'no longer used'}")
        elif (before.id, before.sha256, before.status) != (now.id, now.sha256, now.status):
            changes.append(
                f"{label}: {before.id or before.status} (sha256 {before.sha256[:12] or '-'}) → "
                f"{now.id or now.status} (sha256 {now.sha256[:12] or '-'})"
            )
    return changes


def check_plan(plan: Plan, cluster: Cluster) -> tuple[Plan, PlanDiff]:
    """The plan re-evaluated on `cluster`, and how the recorded plan differs from it (empty: fresh).

    Raises PlanError when the plan cannot run on the cluster (unknown GPUs, other GPU types,
    memory does not fit, …).
    """
    honest = evaluate(plan, cluster)
    check_gpu_types(plan, cluster)
    return honest, diff_plans(plan, honest, cluster.gpu_by_id)
