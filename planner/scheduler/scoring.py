"""Score a candidate grouping fast, for the search phases (roles, refinement).

A state is a list of (GPU group, role). Its score is the max-flow value (throughput objective), that
per $/h of the GPUs in replicas (cost), or the same two on the replicas' capacities within the SLO
(goodput, goodput_per_usd: planner.costs.slo). Per-group assessments and per-pair
KV capacities are cached, so a move re-evaluates only the groups it changed; the max-flow itself
is re-solved with scipy's Dinic (same value as Edmonds–Karp, faster in the inner loop) over the
network of planner.scheduler.network; for large clusters each replica keeps only its `route_limit`
fastest own-arc routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from planner.costs.layout import Layout, Stage
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, route_capacity
from planner.scheduler.layouts import best_assessment, group_shape, node_parts
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.network import replica_flow
from planner.scheduler.stability import Engine, anchor_of, key_of, moved_gpus, unchanged
from planner.types import Role, RolesMode

Group = tuple[str, ...]
State = tuple[tuple[Group, Role], ...]


GOODPUT_OBJECTIVES = ("goodput", "goodput_per_usd")
PER_USD_OBJECTIVES = ("cost", "goodput_per_usd")
ROLES: dict[RolesMode, tuple[Role, ...]] = {
    "disaggregated": ("prefill", "decode"),
    "colocated": ("colocated",),
    "mixed": ("prefill", "decode", "colocated"),
}


@dataclass(frozen=True)
class Score:
    value: float  # what the search maximises
    throughput_rps: float  # the flow value the objective reads: within the SLO for goodput objectives
    flow: FlowResult


def canonical(state: Sequence[tuple[Group, Role]]) -> State:
    return tuple(sorted((tuple(sorted(g)), role) for g, role in state))


class Scorer:
    """Caches and scores; the only mutable object of the search, owned by one solve() call."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        launchable: bool,
        objective: str,
        route_limit: int = 16,
        anchor: Sequence[Engine] | None = None,
        max_moved: int | None = None,
        roles: RolesMode = "disaggregated",
    ) -> None:
        self.cluster = cluster
        self.launchable = launchable
        self.objective = objective
        self.goodput = objective in GOODPUT_OBJECTIVES
        self.route_limit = route_limit
        self.max_moved = max_moved
        self.roles: tuple[Role, ...] = ROLES[roles]
        self._anchor = anchor_of(anchor or (), cluster.gpu_by_id)
        self._assessments: dict[tuple[Group, Role], Assessment | None] = {}
        self._shapes: dict[tuple[Role, tuple], Assessment | None] = {}
        self._kv: dict[tuple[str, str], float] = {}
        self._scores: dict[State, Score] = {}
        self._bottlenecks: dict[State, str] = {}

    def assessment(self, group: Group, role: Role) -> Assessment | None:
        """The group's best replica in `role`; None when it fits none, or the role is not allowed."""
        if role not in self.roles:
            return None
        key = (tuple(sorted(group)), role)
        if key not in self._assessments:
            self._assessments[key] = self._assess(key[0], role)
        return self._assessments[key]

    def _assess(self, group: Group, role: Role) -> Assessment | None:
        """Groups of the same shape perform the same: reuse the layout found for the first of them."""
        parts = node_parts(self.cluster, group)
        shape = (role, group_shape(self.cluster, parts))
        if shape not in self._shapes:
            self._shapes[shape] = best_assessment(self.cluster, group, role, self.launchable)
        found = self._shapes[shape]
        if found is None or found.layout.gpus == tuple(g for _, p in parts for g in p):
            return found
        gpus = iter(g for _, p in parts for g in p)
        stages = tuple(
            Stage(tuple(next(gpus) for _ in stage.gpus), stage.layer_start, stage.layer_end)
            for stage in found.layout.stages
        )
        return replace(found, layout=Layout(stages))

    def kv_capacity(self, p: Assessment, d: Assessment) -> float:
        key = (p.id, d.id)
        if key not in self._kv:
            self._kv[key] = route_capacity(self.cluster, p, d, self.launchable)
        return self._kv[key]

    def score(self, state: Sequence[tuple[Group, Role]]) -> Score:
        key = canonical(state)
        if key not in self._scores:
            self._scores[key] = self._score(key)
        return self._scores[key]

    def bound(self, state: Sequence[tuple[Group, Role]]) -> float:
        """An upper bound on score(state).value, cheap (no flow): min(Σ prefill, Σ decode) + Σ colocated
        capacity ≤ min(Σ prefill + Σ colocated, Σ decode + Σ colocated), the value returned.

        Only for the throughput and goodput objectives without a moved-GPU cap; otherwise +inf (no pruning)."""
        if self.objective in PER_USD_OBJECTIVES or self.max_moved is not None:
            return float("inf")
        sums = {"prefill": 0.0, "decode": 0.0, "colocated": 0.0}
        for group, role in state:
            if (a := self.assessment(group, role)) is not None:
                sums[role] += a.rate(self.goodput)
        return min(sums["prefill"], sums["decode"]) + sums["colocated"]

    def moved_gpus(self, state: Sequence[tuple[Group, Role]]) -> int:
        """How many GPUs of the anchor the state moves (planner.scheduler.stability), layouts included."""
        return len(moved_gpus(self._anchor, [self.engine(group, role) for group, role in state]))

    def engine(self, group: Group, role: Role) -> Engine:
        """(group, role, layout key) of the engine the group runs in the role (no layout when it cannot)."""
        a = self.assessment(group, role)
        return group, role, key_of(a.layout) if a is not None else None

    def bottleneck(self, state: State) -> str:
        """What limits the state's plan (the min cut), solved once per state the search moves to."""
        if state not in self._bottlenecks:
            self._bottlenecks[state] = self._flow(state, details=True).bottleneck
        return self._bottlenecks[state]

    def _score(self, state: State) -> Score:
        flow = self._flow(state, details=False)
        live = [a for group, role in state if (a := self.assessment(group, role)) is not None]
        used = [a for a in live if flow.replica_flow.get(a.id, 0.0) > 0]
        cost = self.cluster.price_per_hour(g for a in used for g in a.layout.gpus)
        value = flow.value / max(cost, 1e-9) if self.objective in PER_USD_OBJECTIVES else flow.value
        if self.max_moved is not None and self.moved_gpus(state) > self.max_moved:
            value = -1.0  # infeasible: below every real plan, so the search moves back inside the budget
        return Score(value, flow.value, flow)

    def _flow(self, state: State, *, details: bool) -> FlowResult:
        live = [a for group, role in state if (a := self.assessment(group, role)) is not None]
        return replica_flow(
            self.cluster,
            live,
            self.kv_capacity,
            launchable=self.launchable,
            method="dinic",
            details=details,
            route_limit=self.route_limit,
            goodput=self.goodput,
        )

    def assessments(self, state: Sequence[tuple[Group, Role]]) -> list[Assessment]:
        """The replicas a state deploys: feasible groups that carry flow, and (when re-planning) the
        running plan's replicas that stay as they are, even idle: stopping them would move GPUs."""
        flow = self.score(state).flow
        deployed = []
        for group, role in canonical(state):
            a = self.assessment(group, role)
            kept = bool(self._anchor) and a is not None and unchanged(self._anchor, group, role, key_of(a.layout))
            if a is not None and (flow.replica_flow.get(a.id, 0.0) > 0 or kept):
                deployed.append(a)
        return deployed

    def ranked_states(self, limit: int) -> list[State]:
        """The `limit` best-scoring states seen so far that deploy different replicas (best first): the
        candidates a verifier re-ranks. Only states already scored, so this costs no flow."""
        ranked = sorted(self._scores.items(), key=lambda item: (-item[1].value, len(item[0]), item[0]))
        seen: set[frozenset[str]] = set()
        out: list[State] = []
        for state, score in ranked:
            if len(out) >= limit or score.value <= 0:
                break
            deployed = frozenset(a.id for a in self.assessments(state))
            if deployed and deployed not in seen:
                seen.add(deployed)
                out.append(state)
        return out
