"""Score a candidate grouping fast, for the search phases (roles, refinement).

A state is a tuple of (GPU group, role, layout variant) items: the variant is () for the group's
default layout (its highest capacity) or fixes another one (planner.scheduler.variants). Its score
is the max-flow value (throughput objective), that per $/h of the GPUs in replicas (cost), or the
same two on the replicas' capacities within the SLO (goodput, goodput_per_usd: planner.costs.slo).
Per-group assessments are cached by what the cost model reads (the group's shape: GPU
types, counts, links; the role; the variant), route traffic by the two layouts, and scores by state,
so a move re-evaluates only the groups it changed; the max-flow itself is re-solved with scipy's
Dinic (same value as Edmonds–Karp, faster in the inner loop) over the network of
planner.scheduler.network (which answers a *free* network without solving anything); for large
clusters each replica keeps only its `route_limit` fastest own-arc routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from planner.costs.layout import Layout, Stage
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment, assess
from planner.scheduler.kvload import RouteTraffic, route_traffic
from planner.scheduler.layouts import best_assessment, group_shape, node_parts, tp_options
from planner.scheduler.maxflow import FlowResult
from planner.scheduler.network import replica_flow
from planner.scheduler.stability import Engine, anchor_of, key_of, moved_gpus, unchanged
from planner.scheduler.variants import layout_moves, layout_of_variant, variant_of
from planner.types import Role, RolesMode

TIE_BREAK_GPUS = 64  # up to this many GPUs, equal values are ranked by the replicas' total capacity
Group = tuple[str, ...]
LayoutChoice = tuple  # a Variant, or () for the group's default layout
Item = tuple[Group, Role, LayoutChoice]
State = tuple[Item, ...]


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
    tie_break: float = 0.0  # Σ capacity of the state's replicas, when the scorer breaks ties (else 0)


def canonical(state: Sequence[tuple]) -> State:
    """Items sorted, groups sorted; (group, role) pairs get the default layout (variant ()).

    The Scorer takes a tuple as canonical already (moves build their states canonical): only other
    sequences are normalised here, so the inner loop does not sort every group again."""
    if type(state) is tuple:
        return state
    return tuple(sorted((tuple(sorted(item[0])), item[1], item[2] if len(item) > 2 else ()) for item in state))


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
        # small clusters climb across plateaus (refine._better); large ones would wander on them
        self.tie_break = len(cluster.gpus) <= TIE_BREAK_GPUS
        self._anchor = anchor_of(anchor or (), cluster.gpu_by_id)
        self._assessments: dict[Item, Assessment | None] = {}
        self._shapes: dict[tuple, tuple[Assessment | None, list[str]]] = {}
        self._traffic: dict[tuple[Layout, Layout], RouteTraffic] = {}
        self._scores: dict[State, Score] = {}
        self._details: dict[State, FlowResult] = {}
        self._bounds: dict[State, float] = {}
        self._layout_moves: dict[Item, list[LayoutChoice]] = {}
        self._parts: dict[Group, list[tuple[str, list[str]]]] = {}

    # ------------------------------------------------------------------ replicas

    def assessment(self, group: Group, role: Role, variant: LayoutChoice = ()) -> Assessment | None:
        """The group's replica in the role with the variant's layout (() : the default layout), or
        None when that layout is not admissible or does not fit, or the role is not allowed."""
        if role not in self.roles:
            return None
        key = (group, role, variant)  # groups usually come sorted (canonical states): try that first
        if key not in self._assessments:
            key = (tuple(sorted(group)), role, variant)
            if key not in self._assessments:
                self._assessments[key] = self._assess(key[0], role, variant)
        return self._assessments[key]

    def parts(self, group: Group) -> list[tuple[str, list[str]]]:
        """node_parts of the group (cached: moves ask for the same groups again and again)."""
        if group not in self._parts:
            self._parts[group] = node_parts(self.cluster, group)
        return self._parts[group]

    def _assess(self, group: Group, role: Role, variant: LayoutChoice) -> Assessment | None:
        """Groups of the same shape perform the same: reuse the layout found for the first of them, its
        GPUs mapped position by position (the shape lists the group's nodes in a fixed order)."""
        parts = self.parts(group)
        if not variant:
            shape: tuple = (role, group_shape(self.cluster, parts))
            if shape not in self._shapes:
                found = best_assessment(self.cluster, group, role, self.launchable)
                self._shapes[shape] = (found, [g for _, p in parts for g in p])
            return _renamed(*self._shapes[shape], [g for _, p in parts for g in p])
        layout = layout_of_variant(self.cluster, group, variant)
        if layout is None or variant[0] not in tp_options(self.cluster, parts, role, self.launchable):
            return None
        by_name = dict(parts)
        ordered = [(node, by_name[node]) for node in variant[1]]
        shape = (role, group_shape(self.cluster, ordered), variant[0], variant[2])
        if shape not in self._shapes:
            found = assess(self.cluster, role, layout)
            if found is not None and self.cluster.slo is not None and not (found.goodput_rps or 0.0) > 0.0:
                found = None  # as best_assessment: with an SLO, only layouts that serve within it
            self._shapes[shape] = (found, list(layout.gpus))
        return _renamed(*self._shapes[shape], list(layout.gpus))

    def layout_moves(self, group: Group, role: Role, variant: LayoutChoice) -> list[LayoutChoice]:
        """The variants one layout move away from the item's layout (planner.scheduler.variants), the
        default layout written as (); cached, since the same items recur step after step."""
        key = (group, role, variant)
        if key not in self._layout_moves:
            current, default = self.assessment(group, role, variant), self.assessment(group, role)
            found: list[LayoutChoice] = []
            if current is not None:
                plain = variant_of(self.cluster, default.layout) if default is not None else None
                moved = layout_moves(self.cluster, group, role, current.layout, self.launchable)
                found = sorted(() if other == plain else other for other in moved)
            self._layout_moves[key] = found
        return self._layout_moves[key]

    def live(self, state: Sequence[tuple]) -> list[Assessment]:
        """The replicas of a state: its items that fit their role."""
        return [a for item in canonical(state) if (a := self.assessment(*item)) is not None]

    def traffic(self, p: Assessment, d: Assessment) -> RouteTraffic:
        key = (p.layout, d.layout)
        if key not in self._traffic:
            self._traffic[key] = route_traffic(self.cluster, p.layout, d.layout)
        return self._traffic[key]

    # ------------------------------------------------------------------ scores

    def score(self, state: Sequence[tuple]) -> Score:
        key = canonical(state)
        if key not in self._scores:
            self._scores[key] = self._score(key)
        return self._scores[key]

    def bound(self, state: Sequence[tuple], floor: float = float("-inf")) -> float:
        """An upper bound on score(state).value without a linear program: the max-flow of the relaxed
        network (planner.scheduler.network, `relaxed`), which is the score itself when nothing needed
        relaxing (then it is kept as the score). When min(Σ prefill, Σ decode) + Σ colocated capacity
        is already ≤ `floor`, that is returned instead (no flow).

        Only for the throughput and goodput objectives without a moved-GPU cap; otherwise +inf (no pruning)."""
        if self.objective in PER_USD_OBJECTIVES or self.max_moved is not None:
            return float("inf")
        key = canonical(state)
        if key in self._scores:
            return self._scores[key].value
        if key not in self._bounds:
            live = self.live(key)
            if (capacity := _capacity_bound(live, self.goodput)) <= floor:
                return capacity  # already no better than `floor`: no flow needed
            flow = self._flow(live, details=False, relaxed=True)
            if flow.upper_bound:
                self._bounds[key] = flow.value
            else:  # nothing to relax: that is the score
                self._scores[key] = Score(flow.value, flow.value, flow, self._tie_break(live))
                return flow.value
        return self._bounds[key]

    def moved_gpus(self, state: Sequence[tuple]) -> int:
        """How many GPUs of the anchor the state moves (planner.scheduler.stability), layouts included."""
        return len(moved_gpus(self._anchor, [self.engine(*item) for item in canonical(state)]))

    def engine(self, group: Group, role: Role, variant: LayoutChoice = ()) -> Engine:
        """(group, role, layout key) of the engine the item runs (no layout when it cannot run)."""
        a = self.assessment(group, role, variant)
        return group, role, key_of(a.layout) if a is not None else None

    def moved_by(self, replicas: Sequence[Assessment]) -> int:
        """How many GPUs of the anchor these replicas move (their own layouts)."""
        return len(moved_gpus(self._anchor, [(a.layout.gpus, a.role, key_of(a.layout)) for a in replicas]))

    def details(self, state: Sequence[tuple]) -> FlowResult:
        """The state's flow with routes and min cut, solved once per state the search moves to."""
        key = canonical(state)
        if key not in self._details:
            self._details[key] = self._flow(self.live(key), details=True)
        return self._details[key]

    def bottleneck(self, state: Sequence[tuple]) -> str:
        """What limits the state's plan (the min cut)."""
        return self.details(state).bottleneck

    def _score(self, state: State) -> Score:
        live = self.live(state)
        flow = self._flow(live, details=False)
        value = throughput = flow.value
        if self.objective in PER_USD_OBJECTIVES:
            used = [a for a in live if flow.replica_flow.get(a.id, 0.0) > 0]
            value = flow.value / max(self.cluster.price_per_hour(g for a in used for g in a.layout.gpus), 1e-9)
        if self.max_moved is not None and self.moved_gpus(state) > self.max_moved:
            value = -1.0  # infeasible: below every real plan, so the search moves back inside the budget
        return Score(value, throughput, flow, self._tie_break(live))

    def _tie_break(self, live: Sequence[Assessment]) -> float:
        return sum(a.rate(self.goodput) for a in live) if self.tie_break else 0.0

    def _flow(self, live: list[Assessment], *, details: bool, relaxed: bool = False) -> FlowResult:
        return replica_flow(
            self.cluster,
            live,
            self.traffic,
            launchable=self.launchable,
            method="dinic",
            details=details,
            route_limit=self.route_limit,
            relaxed=relaxed,
            goodput=self.goodput,
        )

    def assessments(self, state: Sequence[tuple]) -> list[Assessment]:
        """The replicas a state deploys: feasible groups that carry flow, and (when re-planning) the
        running plan's replicas that stay as they are, even idle: stopping them would move GPUs."""
        flow = self.details(state)
        deployed = []
        for group, role, variant in canonical(state):
            a = self.assessment(group, role, variant)
            kept = bool(self._anchor) and a is not None and unchanged(self._anchor, group, role, key_of(a.layout))
            if a is not None and (flow.replica_flow.get(a.id, 0.0) > 0 or kept):
                deployed.append(a)
        return deployed

    def ranked_states(self, limit: int, *, disaggregated: bool = False) -> list[State]:
        """The `limit` best-scoring states seen so far that deploy different replicas (best first): the
        candidates a verifier re-ranks; `disaggregated`: only states without colocated replicas. Only
        states already scored, so this costs no flow beyond their routes."""
        ranked = sorted(self._scores.items(), key=lambda item: (-item[1].value, len(item[0]), item[0]))
        seen: set[frozenset[str]] = set()
        out: list[State] = []
        for state, score in ranked:
            if len(out) >= limit or score.value <= 0:
                break
            if disaggregated and any(item[1] == "colocated" for item in state):
                continue
            deployed = frozenset(a.id for a in self.assessments(state))
            if deployed and deployed not in seen:
                seen.add(deployed)
                out.append(state)
        return out


def _renamed(found: Assessment | None, names: list[str], gpus: list[str]) -> Assessment | None:
    """A cached assessment of another group of the same shape (its GPUs `names`, position by position),
    moved onto these `gpus`."""
    if found is None or names == gpus:
        return found
    rename = dict(zip(names, gpus))
    stages = tuple(
        Stage(tuple(rename[g] for g in stage.gpus), stage.layer_start, stage.layer_end) for stage in found.layout.stages
    )
    return replace(found, layout=Layout(stages))


def _capacity_bound(live: Sequence[Assessment], goodput: bool) -> float:
    sums = {"prefill": 0.0, "decode": 0.0, "colocated": 0.0}
    for a in live:
        sums[a.role] += a.rate(goodput)
    return min(sums["prefill"], sums["decode"]) + sums["colocated"]
