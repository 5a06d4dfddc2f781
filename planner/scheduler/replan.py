"""Stable re-planning: a new plan for a changed cluster that stays close to the running plan.

Operators re-plan when a node disappears or GPUs are added; every GPU that changes replica or
role means restarting an engine. So: solve freely to learn the best throughput T*, then search
from the running plan's replicas (those whose GPUs all still exist; the rest of the GPUs start in
TP-friendly blocks) with a cap on moved GPUs — 0, 2, 4, 8, … — and return the first plan within
`max_loss` of T*. With `max_moved_gpus` the cap is fixed and that plan is returned.

The running plan comes in as its engines: (GPU group, role, layout key) triples
(planner.plans.assemble.running_engines); a kept group whose best layout changed restarts, so it moves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster
from planner.scheduler.partition import make_blocks
from planner.scheduler.scoring import Scorer, State, canonical
from planner.scheduler.search import Progress, SearchResult, replica_bytes, search
from planner.scheduler.stability import Engine, anchor_of, key_of, moved_gpus
from planner.scheduler.variants import variant_of_key
from planner.types import Connector, Objective, RolesMode

FREE_SHARE = 0.4  # of the time limit, for the unconstrained solve


def baseline_state(cluster: Cluster, running: Sequence[Engine], scorer: Scorer) -> State:
    """The running plan's replicas that still fit the cluster, in their running layout when the search
    can express it (planner.scheduler.variants) so that keeping them moves nothing, plus blocks of every
    other GPU."""
    kept = []
    for group, role, *key in running:
        group = tuple(sorted(group))
        if role not in scorer.roles or not all(g in cluster.gpu_by_id for g in group):
            continue
        variant = variant_of_key(cluster, key[0]) if key and key[0] else ()
        if variant and scorer.assessment(group, role, variant) is None:
            variant = ()
        if scorer.assessment(group, role, variant) is not None:
            kept.append((group, role, variant))
    placed = {g for group, *_ in kept for g in group}
    for block in make_blocks(cluster, replica_bytes(cluster)):
        free = tuple(g for g in block if g not in placed)
        if free:
            roles = [(a.capacity_rps, role) for role in scorer.roles if (a := scorer.assessment(free, role))]
            kept.append((free, max(roles)[1] if roles else scorer.roles[-1], ()))
    return canonical(kept)


def replan(
    cluster: Cluster,
    running: Sequence[Engine],
    *,
    seed: int = 0,
    time_limit: float = 60.0,
    connector: Connector = "nixl",
    objective: Objective | None = None,
    max_moved_gpus: int | None = None,
    max_loss: float = 0.05,
    roles: RolesMode = "disaggregated",
    progress: Progress | None = None,
) -> SearchResult:
    """See the module docstring; the result records how many GPUs moved in facts.moved_gpus."""
    objective = objective or cluster.default_objective
    scorer = Scorer(cluster, launchable=connector != "none", objective=objective, roles=roles)
    start = baseline_state(cluster, running, scorer)
    anchor = tuple(running)
    common = {
        "seed": seed,
        "connector": connector,
        "objective": objective,
        "roles": roles,
        "progress": progress,
    }
    if max_moved_gpus is not None:
        return search(cluster, time_limit=time_limit, start=start, anchor=anchor, max_moved=max_moved_gpus, **common)
    free = search(cluster, time_limit=FREE_SHARE * time_limit, **common)
    budgets = [0]
    while budgets[-1] < len(cluster.gpus):
        budgets.append(max(2, budgets[-1] * 2))
    share = (1 - FREE_SHARE) * time_limit / len(budgets)
    for budget in budgets:
        try:
            result = search(cluster, time_limit=share, start=start, anchor=anchor, max_moved=budget, **common)
        except InfeasibleError:
            continue  # nothing runs without moving more GPUs than this budget
        if result.throughput_rps >= (1 - max_loss) * free.throughput_rps:
            return result
    engines = [(a.layout.gpus, a.role, key_of(a.layout)) for a in free.replicas]
    moved = moved_gpus(anchor_of(anchor, cluster.gpu_by_id), engines)
    return dataclasses.replace(free, facts=dataclasses.replace(free.facts, moved_gpus=len(moved)))
