"""The HexGen-2 scheduler, end to end: `search(cluster) -> SearchResult` (planner.plans makes the Plan).

1. Phase 1 (partition.py): coarsen GPUs into TP-friendly blocks, then for each K around
   total memory ÷ replica memory, spectral bisection into K memory-balanced groups and
   Kernighan–Lin swaps that raise intra-group bandwidth while every group still fits.
2. Phase 2 (roles.py): prefill/decode roles by affinity order and max-flow.
3. Layouts (layouts.py) are chosen inside every assessment of a group in a role.
4. Max-flow (network.py, maxflow.py) scores each candidate; the best K's state goes to
5. Phase 3 (refine.py): bottleneck-guided moves from the best few of those states, then
   perturb-and-climb rounds (iterated local search), until done or the time limit.
The result's flow is solved again with Edmonds–Karp over all routes (network.replica_flow), so the
plan's throughput is exactly what `evaluate(plan)` recomputes. With an SLO, the same again on the
replicas' capacities within it (the plan's goodput). The result also carries the next best few
states the search scored (`alternatives`), for a verifier to re-rank by simulation (planner.reference.verify).

Deterministic: the only randomness is a numpy Generator seeded by `seed`; time only decides when
to stop, and a converged search (the plan records `converged`) does not depend on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from planner.costs.memory import check_model_fits, kv_bytes_per_token_layer
from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.network import plan_flow
from planner.scheduler.partition import candidate_k, flatten, kernighan_lin_refine, make_blocks, spectral_groups
from planner.scheduler.refine import refine
from planner.scheduler.roles import assign_roles
from planner.scheduler.scoring import GOODPUT_OBJECTIVES, Scorer, State
from planner.scheduler.stability import Engine
from planner.types import Connector, Objective, RolesMode

Progress = Callable[[float, float], None]  # (fraction of the time budget used, best throughput so far)
KV_HEADROOM = 0.25  # a replica needs its weights plus about this fraction again for KV cache
PHASE12_SHARE = 0.5  # at most this share of the time limit goes to trying K values
SEARCH_SHARE = 0.97  # the search stops here; the rest is for assembling the plan
STARTS = 3  # best phase 1–2 states the refinement climbs from


@dataclass(frozen=True)
class SearchFacts:
    """How a search ran: what a plan records about its solver (plan.yaml's `solver`)."""

    seed: int
    objective: Objective
    connector: Connector
    k_tried: tuple[int, ...]
    iterations: int
    converged: bool  # refinement stopped because no move improved (not the time limit)
    roles: RolesMode
    time_limit_s: float
    moved_gpus: int | None  # GPUs of the running plan that changed replica or role (re-planning only)


@dataclass(frozen=True)
class SearchResult:
    """The replicas a search chose, their max-flow over every route (Edmonds–Karp), and how it ran."""

    replicas: tuple[Assessment, ...]
    flow: FlowResult
    facts: SearchFacts
    goodput_flow: FlowResult | None = None  # on capacities within the SLO (None without an SLO)
    alternatives: tuple[tuple[Assessment, ...], ...] = ()  # the next best states' replicas, best first

    @property
    def throughput_rps(self) -> float:
        """The flow value the objective maximises: within the SLO for goodput objectives."""
        if self.facts.objective in GOODPUT_OBJECTIVES and self.goodput_flow is not None:
            return self.goodput_flow.value
        return self.flow.value


def replica_bytes(cluster: Cluster) -> float:
    """Memory one replica wants: weights plus KV headroom, before the utilisation cap."""
    model = cluster.model
    weights = model.total_params * cluster.dtype_bytes
    long_request = (cluster.workload.prompt.upper + cluster.workload.output.upper) * model.layers
    return max(weights * (1 + KV_HEADROOM), weights + 4 * long_request * kv_bytes_per_token_layer(cluster))


def initial_states(cluster: Cluster, scorer: Scorer, seed: int, deadline: float) -> tuple[list[int], list[State], bool]:
    """Phases 1 and 2 for each candidate K; stops early at the deadline, keeping what it has
    (the last value says whether every K was tried)."""
    need = replica_bytes(cluster)
    blocks = make_blocks(cluster, need)

    def fits(gpus: tuple[str, ...]) -> bool:
        return sum(cluster.gpu_by_id[g].gpu.memory for g in gpus) * cluster.memory_utilization >= need

    ks = candidate_k(cluster, need, len(blocks))
    tried, states = [], []
    for k in ks:
        groups = kernighan_lin_refine(cluster, spectral_groups(cluster, blocks, k), fits, seed=seed)
        states.append(assign_roles(scorer, [flatten(g) for g in groups]))
        tried.append(k)
        if time.monotonic() >= deadline:
            break
    return tried, states, len(tried) == len(ks)


def _moved_within_limit(
    cluster: Cluster,
    scorer: Scorer,
    state: State,
    replicas: list[Assessment],
    anchor: Sequence[Engine] | None,
    max_moved: int | None,
) -> int | None:
    """GPUs of the anchor the found replicas move (None without an anchor); InfeasibleError when the
    search found nothing that serves, or only plans moving more than `max_moved` GPUs."""
    if not replicas or scorer.score(state).throughput_rps <= 0:
        split = scorer.roles == ("prefill", "decode")
        raise InfeasibleError(
            f"{cluster.source}: no plan serves {cluster.model.name}: no group of these GPUs holds the model "
            + ("as both a prefill and a decode replica" if split else "as a replica in any allowed role")
            + (" within the SLO" if cluster.slo is not None else "")
            + ".",
            hint="add GPUs, relax the SLO, or use a smaller model",
        )
    moved = scorer.moved_by(replicas) if anchor else None
    if max_moved is not None and moved is not None and moved > max_moved:
        raise InfeasibleError(
            f"{cluster.source}: every plan found moves {moved} GPUs of the running plan; the limit is {max_moved}.",
            hint="raise --max-moved-gpus",
        )
    return moved


def deployed_flow(
    cluster: Cluster, replicas: list[Assessment], *, launchable: bool, keep_idle: bool, goodput: bool = False
) -> tuple[list[Assessment], FlowResult, FlowResult | None]:
    """The plan's flows over every route (Edmonds–Karp): saturated, and within the SLO when the cluster
    has one. Replicas that the flow the objective reads (within the SLO when `goodput`) leaves without
    requests are dropped (the search's sparser network used them, the full one routes around them) unless
    `keep_idle` (re-planning keeps running replicas). Dropping a replica without flow never lowers that value."""

    def flows(replicas: list[Assessment]) -> tuple[FlowResult, FlowResult | None]:
        within = plan_flow(cluster, replicas, launchable=launchable, goodput=True) if cluster.slo else None
        return plan_flow(cluster, replicas, launchable=launchable), within

    flow, within = flows(replicas)
    while not keep_idle:
        read = within if goodput and within is not None else flow
        if not (idle := [a for a in replicas if read.replica_flow.get(a.id, 0.0) <= 0]):
            break
        replicas = [a for a in replicas if a not in idle]
        flow, within = flows(replicas)
    return replicas, flow, within


def search(
    cluster: Cluster,
    *,
    seed: int = 0,
    time_limit: float = 60.0,
    connector: Connector = "nixl",
    objective: Objective | None = None,
    start: State | None = None,
    anchor: Sequence[Engine] | None = None,
    max_moved: int | None = None,
    roles: RolesMode = "disaggregated",
    alternatives: int = 0,
    progress: Progress | None = None,
) -> SearchResult:
    """The best replicas found for `cluster` within `time_limit` seconds.

    `start` replaces phases 1–2 with a known state (re-planning close to a running plan);
    `max_moved` caps how many GPUs of the `anchor` state (the running plan) may change replica or role.
    `roles`: "disaggregated" (prefill + decode, HexGen-2), "colocated" (one engine does both phases, no KV
    transfer) or "mixed" (each group whichever pays); `alternatives`: also return this many next best
    states the search scored. InfeasibleError when no group of GPUs holds the model in an allowed role.
    """
    check_model_fits(cluster)
    deadline = (began := time.monotonic()) + SEARCH_SHARE * time_limit
    objective = objective or cluster.default_objective
    launchable = connector != "none"
    scorer = Scorer(
        cluster, launchable=launchable, objective=objective, anchor=anchor, max_moved=max_moved, roles=roles
    )
    rng = np.random.default_rng(seed)

    def report(throughput: float) -> None:
        if progress:
            progress(min(1.0, (time.monotonic() - began) / time_limit), throughput)

    if start is None:
        tried, states, every_k = initial_states(cluster, scorer, seed, began + PHASE12_SHARE * time_limit)
    else:
        tried, states, every_k = [], [start], True
    starts = sorted(states, key=lambda s: (-scorer.score(s).value, len(s), s))[:STARTS]
    report(scorer.score(starts[0]).throughput_rps)
    result = refine(scorer, starts, rng, deadline=deadline, on_step=report)
    replicas = scorer.assessments(result.state)
    moved = _moved_within_limit(cluster, scorer, result.state, replicas, anchor, max_moved)
    steps, converged = result.iterations, result.converged and every_k
    facts = SearchFacts(seed, objective, connector, tuple(tried), steps, converged, roles, time_limit, moved)
    replicas, flow, goodput_flow = deployed_flow(
        cluster, replicas, launchable=launchable, keep_idle=anchor is not None, goodput=objective in GOODPUT_OBJECTIVES
    )
    found = SearchResult(tuple(replicas), flow, facts, goodput_flow, _alternatives(scorer, replicas, alternatives))
    report(found.throughput_rps)
    return found


def _alternatives(scorer: Scorer, chosen: list[Assessment], count: int) -> tuple[tuple[Assessment, ...], ...]:
    """The next best `count` states the search scored, as their deployed replicas (never the chosen ones);
    with mixed roles also the best disaggregated state it scored, when that is not among them: the model
    may rank colocated replicas first where the simulator prefers the split (HexGen-2's plan space)."""
    if count <= 0:
        return ()
    found: list[tuple[Assessment, ...]] = []

    def add(states: list[State], limit: int) -> None:
        for replicas in (tuple(scorer.assessments(state)) for state in states):
            ids = {a.id for a in replicas}
            new = ids != {a.id for a in chosen} and all(ids != {a.id for a in other} for other in found)
            if new and limit > 0:
                found.append(replicas)
                limit -= 1

    add(scorer.ranked_states(count + 1), count)
    if len(scorer.roles) > 1 and "colocated" in scorer.roles:
        add(scorer.ranked_states(2, disaggregated=True), 1)
    return tuple(found)
