"""Score a candidate grouping fast, for the search phases (roles, refinement).

A state is a list of (GPU group, role). Its score is the max-flow value (throughput objective)
or max-flow per $/h of the GPUs in replicas (cost objective). Per-group assessments and per-pair
KV capacities are cached, so a move re-evaluates only the groups it changed; the max-flow itself
is re-solved with scipy's Dinic (same value as Edmonds–Karp, faster in the inner loop).
For large clusters each prefill replica keeps only its `route_limit` best KV routes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from planner.costmodel import kv_transfer_capacity
from planner.evaluate import Assessment, tp_compatible
from planner.flow import FlowResult, max_flow
from planner.plan import Role
from planner.strategy import best_assessment
from planner.topology import Cluster

Group = tuple[str, ...]
State = tuple[tuple[Group, Role], ...]
LayoutPolicy = Callable[[Cluster, Group, Role, bool], Assessment | None]  # which layout a group runs in a role


@dataclass(frozen=True)
class Score:
    value: float  # what the search maximises
    throughput_rps: float
    cost_per_hour: float
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
        anchor: State | None = None,
        max_moved: int | None = None,
        layout_policy: LayoutPolicy = best_assessment,
    ) -> None:
        self.cluster = cluster
        self.launchable = launchable
        self.objective = objective
        self.route_limit = route_limit
        self.max_moved = max_moved
        self.layout_policy = layout_policy
        self._anchor = {
            g: (frozenset(group), role) for group, role in anchor or () for g in group if g in cluster.gpu_by_id
        }
        self._assessments: dict[tuple[Group, Role], Assessment | None] = {}
        self._kv: dict[tuple[str, str], float] = {}
        self._scores: dict[State, Score] = {}

    def assessment(self, group: Group, role: Role) -> Assessment | None:
        key = (tuple(sorted(group)), role)
        if key not in self._assessments:
            self._assessments[key] = self.layout_policy(self.cluster, key[0], role, self.launchable)
        return self._assessments[key]

    def kv_capacity(self, p: Assessment, d: Assessment) -> float:
        key = (p.id, d.id)
        if key not in self._kv:
            ok = not self.launchable or tp_compatible(p.layout.tp, d.layout.tp)
            self._kv[key] = kv_transfer_capacity(self.cluster, p.layout, d.layout) if ok else 0.0
        return self._kv[key]

    def score(self, state: Sequence[tuple[Group, Role]]) -> Score:
        key = canonical(state)
        if key not in self._scores:
            self._scores[key] = self._score(key)
        return self._scores[key]

    def bound(self, state: Sequence[tuple[Group, Role]]) -> float:
        """An upper bound on score(state).value, cheap (no flow): min(Σ prefill, Σ decode capacity).

        Only for the throughput objective without a moved-GPU cap; otherwise +inf (no pruning)."""
        if self.objective != "throughput" or self.max_moved is not None:
            return float("inf")
        sums = {"prefill": 0.0, "decode": 0.0}
        for group, role in state:
            if (a := self.assessment(group, role)) is not None:
                sums[role] += a.capacity_rps
        return min(sums.values())

    def moved_gpus(self, state: Sequence[tuple[Group, Role]]) -> int:
        """GPUs of the anchor state (still in the cluster) whose replica (GPU set) or role changed or that
        left the plan; GPUs new to the plan don't count."""
        unchanged = sum(1 for group, role in state for g in group if self._anchor.get(g) == (frozenset(group), role))
        return len(self._anchor) - unchanged

    def _score(self, state: State) -> Score:
        live = [(a, role) for group, role in state if (a := self.assessment(group, role)) is not None]
        prefill = [a for a, role in live if role == "prefill"]
        decode = [a for a, role in live if role == "decode"]
        kv = self._routes(prefill, decode)
        flow = max_flow(
            {a.id: a.capacity_rps for a in prefill}, {a.id: a.capacity_rps for a in decode}, kv, method="dinic"
        )
        used = [a for a in prefill + decode if flow.replica_flow.get(a.id, 0.0) > 0]
        cost = self.cluster.price_per_hour(g for a in used for g in a.layout.gpus)
        value = flow.value if self.objective == "throughput" else flow.value / max(cost, 1e-9)
        if self.max_moved is not None and self.moved_gpus(state) > self.max_moved:
            value = -1.0  # infeasible: below every real plan, so the search moves back inside the budget
        return Score(value, flow.value, cost, flow)

    def _routes(self, prefill: list[Assessment], decode: list[Assessment]) -> dict[tuple[str, str], float]:
        """KV capacity of every usable route; with many replicas, each keeps only its `route_limit` fastest
        routes, counted from both ends so that no replica is cut off."""
        if not prefill or not decode:
            return {}
        caps = np.array([[self.kv_capacity(p, d) for d in decode] for p in prefill])
        keep = caps > 0
        if keep.sum() > self.route_limit * (len(prefill) + len(decode)):
            limit = self.route_limit
            by_row = np.zeros_like(keep)
            if caps.shape[1] > limit:
                rows = np.argpartition(-caps, limit - 1, axis=1)[:, :limit]
                np.put_along_axis(by_row, rows, True, axis=1)
            else:
                by_row[:] = True
            by_col = np.zeros_like(keep)
            if caps.shape[0] > limit:
                cols = np.argpartition(-caps, limit - 1, axis=0)[:limit, :]
                np.put_along_axis(by_col, cols, True, axis=0)
            else:
                by_col[:] = True
            keep &= by_row | by_col
        rows, cols = np.nonzero(keep)
        return {(prefill[i].id, decode[j].id): float(caps[i, j]) for i, j in zip(rows, cols)}

    def assessments(self, state: Sequence[tuple[Group, Role]]) -> list[Assessment]:
        """The replicas a state deploys: feasible groups that carry flow."""
        flow = self.score(state).flow
        live = [a for group, role in canonical(state) if (a := self.assessment(group, role)) is not None]
        return [a for a in live if flow.replica_flow.get(a.id, 0.0) > 0]
