"""Semantic plan diff and the regression gates CI runs on it.

Why semantic: plan ids derive from GPU sets, so a textual diff of two plan.yaml files
shows a changed replica as one removed and one added. Here replicas are matched by their
GPU sets — identical sets first, then the pairing with the largest total overlap
(a maximum-weight bipartite matching, `scipy.optimize.linear_sum_assignment`) — and the
diff reports what an operator must act on: replicas added, removed or changed (role, TP,
PP, layer split, engine limits…), GPUs that move, shifts of the router's weights, and
every summary metric with its absolute and relative delta.

A GPU *moves* when its engine must restart: it served in the old plan, is still in the
cluster, and now serves in a replica with another GPU set or role, or not at all. The rule is
planner.scheduler.stability's, the one `hexplan solve --baseline --max-moved-gpus` bounds, so a
plan solved under that cap passes the diff gate (planner.plans.gates) with the same cap.

Two numbers are *the same* when, after the plan file's rounding to 6 significant digits,
they agree within a relative 1e-6 (`same`); so re-reading a written plan never shows a
change, and neither does float noise.

The same comparison checks a plan for staleness (planner.plans.checks.check_plan): the plan as
recorded against the plan re-evaluated on the cluster now.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from planner.plans.schema import Plan, ReplicaPlan, RoutePlan, round_floats
from planner.scheduler.stability import LayoutKey, anchor_of, layout_key, moved_gpus

REL_TOL = 1e-6
WEIGHT_TOL = 1e-5  # a route's weight is a ratio of rounded rates: several 6-digit roundings add up


@dataclass(frozen=True)
class Metric:
    """A Summary field as the diff shows it; `better` is +1 when higher is better, -1 when lower is."""

    name: str
    label: str
    unit: str
    better: int


METRICS = (
    Metric("goodput_rps", "goodput (within the SLO)", "req/s", +1),  # only when both plans have one
    Metric("throughput_rps", "throughput", "req/s", +1),
    Metric("output_tokens_per_s", "output tokens", "tokens/s", +1),
    Metric("ttft_s", "TTFT (unloaded)", "s", -1),
    Metric("tpot_s", "TPOT", "s", -1),
    Metric("cost_per_hour_usd", "cost", "$/h", -1),
    Metric("usd_per_million_output_tokens", "$ per 1M output tokens", "$", -1),
    Metric("gpus_used", "GPUs used", "GPUs", 0),
)


def same(a: object, b: object) -> bool:
    """Equal at the plan file's precision: 6 significant digits, then a relative 1e-6."""
    a, b = round_floats(a), round_floats(b)
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return a == b


def percent(old: float, new: float) -> float | None:
    """Relative change in %; None when it is undefined (from 0 to something)."""
    if old == 0:
        return 0.0 if new == 0 else None
    return (new - old) / abs(old) * 100.0


@dataclass(frozen=True)
class MetricDelta:
    metric: Metric
    old: float
    new: float

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def pct(self) -> float | None:
        return percent(self.old, self.new)

    @property
    def changed(self) -> bool:
        return not same(self.old, self.new)


@dataclass(frozen=True)
class Change:
    """One field of a matched replica that differs: `field` is e.g. "tp", "layers", "engine.max_num_seqs"."""

    field: str
    old: object
    new: object


@dataclass(frozen=True)
class ReplicaDiff:
    """A replica present in one plan or both; `changes` is empty for an unchanged matched pair."""

    old: ReplicaPlan | None
    new: ReplicaPlan | None
    changes: tuple[Change, ...] = ()

    @property
    def kind(self) -> Literal["added", "removed", "changed", "same"]:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed" if self.changes else "same"

    @property
    def label(self) -> str:
        if self.old is not None and self.new is not None and self.old.id != self.new.id:
            return f"{self.old.id} → {self.new.id}"
        return (self.new or self.old).id  # type: ignore[union-attr]


@dataclass(frozen=True)
class MovedGpu:
    """A GPU of the old plan, still in the cluster, whose replica's GPU set or role changed; None: now idle."""

    gpu: str
    old_replica: str
    new_replica: str | None
    old_role: str
    new_role: str | None


@dataclass(frozen=True)
class RouteDiff:
    """A P→D route that differs, named by the new plan's ids (a route only the old plan has: by the old ids).

    `*_weight` is the route's share of its prefill replica's outflow — what the router uses.
    """

    source: str
    target: str
    old: RoutePlan | None
    new: RoutePlan | None
    old_weight: float
    new_weight: float


@dataclass(frozen=True)
class PlanDiff:
    metrics: tuple[MetricDelta, ...]
    bottleneck: tuple[str, str]
    replicas: tuple[ReplicaDiff, ...]  # every replica, unchanged ones included (kind "same")
    moved: tuple[MovedGpu, ...]
    added_gpus: tuple[str, ...]  # serve only in the new plan
    gone_gpus: tuple[str, ...]  # served in the old plan, no longer in the cluster
    routes: tuple[RouteDiff, ...]

    @property
    def replica_changes(self) -> tuple[ReplicaDiff, ...]:
        return tuple(r for r in self.replicas if r.kind != "same")

    @property
    def empty(self) -> bool:
        return not (
            self.replica_changes
            or self.moved
            or self.added_gpus
            or self.gone_gpus
            or self.routes
            or any(m.changed for m in self.metrics)
            or self.bottleneck[0] != self.bottleneck[1]
        )

    def metric(self, name: str) -> MetricDelta:
        return next(m for m in self.metrics if m.metric.name == name)


def match_replicas(old: Sequence[ReplicaPlan], new: Sequence[ReplicaPlan]) -> list[tuple[int, int]]:
    """Pairs (old index, new index): identical GPU sets, then maximum total overlap among the rest.

    Pairs with no GPU in common are never formed: such replicas are removed and added.
    O(R³) for R unmatched replicas (Hungarian algorithm), negligible next to solving.
    """
    new_by_set = {frozenset(r.gpus): j for j, r in enumerate(new)}
    pairs = [(i, new_by_set[frozenset(r.gpus)]) for i, r in enumerate(old) if frozenset(r.gpus) in new_by_set]
    # Sorted by GPU set so the matching does not depend on the order replicas are listed in.
    rest_old = sorted(set(range(len(old))) - {i for i, _ in pairs}, key=lambda i: sorted(old[i].gpus))
    rest_new = sorted(set(range(len(new))) - {j for _, j in pairs}, key=lambda j: sorted(new[j].gpus))
    if rest_old and rest_new:
        overlap = np.array([[len(set(old[i].gpus) & set(new[j].gpus)) for j in rest_new] for i in rest_old])
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        pairs += [(rest_old[r], rest_new[c]) for r, c in zip(rows, cols, strict=True) if overlap[r, c] > 0]
    return sorted(pairs)


def _layers(r: ReplicaPlan) -> list[list[int]]:
    return [list(s.layers) for s in r.stages]


def replica_changes(old: ReplicaPlan, new: ReplicaPlan) -> tuple[Change, ...]:
    """Every field of a matched pair that differs, in a fixed order (structure first, then figures)."""
    fields: list[tuple[str, object, object]] = [
        ("id", old.id, new.id),
        ("role", old.role, new.role),
        ("gpus", sorted(old.gpus), sorted(new.gpus)),
        ("gpu_types", old.gpu_types, new.gpu_types),
        ("tp", old.tp, new.tp),
        ("pp", old.pp, new.pp),
        ("layers", _layers(old), _layers(new)),
        ("stages", [s.gpus for s in old.stages], [s.gpus for s in new.stages]),
    ]
    fields += [(f"engine.{k}", v, getattr(new.engine, k)) for k, v in old.engine.model_dump().items()]
    fields += [("capacity_rps", old.capacity_rps, new.capacity_rps), ("latency_s", old.latency_s, new.latency_s)]
    fields += [("goodput_rps", old.goodput_rps, new.goodput_rps)]
    changes = [Change(name, a, b) for name, a, b in fields if not same(a, b)]
    if any(c.field in ("gpus", "tp", "pp") for c in changes):
        # A new GPU set or shape implies new stages; listing them again would only repeat it.
        changes = [c for c in changes if c.field != "stages"]
    return tuple(changes)


def _weights(routes: Sequence[RoutePlan]) -> dict[tuple[str, str], float]:
    out: dict[str, float] = {}
    for r in routes:
        out[r.source] = out.get(r.source, 0.0) + r.rate_rps
    return {(r.source, r.target): r.rate_rps / out[r.source] if out[r.source] > 0 else 0.0 for r in routes}


def route_diffs(old: Plan, new: Plan, renamed: dict[str, str]) -> tuple[RouteDiff, ...]:
    """Routes whose rate, weight, capacity or KV traffic differ; old ids are renamed to their matches."""
    old_routes = {(renamed.get(r.source, r.source), renamed.get(r.target, r.target)): r for r in old.routes}
    new_routes = {(r.source, r.target): r for r in new.routes}
    old_w = {(renamed.get(s, s), renamed.get(t, t)): w for (s, t), w in _weights(old.routes).items()}
    new_w = _weights(new.routes)
    out = []
    for key in sorted(old_routes.keys() | new_routes.keys()):
        a, b = old_routes.get(key), new_routes.get(key)
        wa, wb = old_w.get(key, 0.0), new_w.get(key, 0.0)
        figures = ("rate_rps", "capacity_rps", "kv_gbps")
        moved = not math.isclose(wa, wb, rel_tol=WEIGHT_TOL, abs_tol=1e-12)
        if a is None or b is None or moved or any(not same(getattr(a, f), getattr(b, f)) for f in figures):
            # A route only the old plan has keeps its old ids: renamed, a role flip would read "d-… → d-…".
            named = b or a
            out.append(RouteDiff(named.source, named.target, a, b, wa, wb))  # type: ignore[union-attr]
    return tuple(sorted(out, key=lambda r: (r.source, r.target)))


def _layout(replica: ReplicaPlan) -> LayoutKey:
    return layout_key((s.gpus, *s.layers) for s in replica.stages)


def diff_plans(old: Plan, new: Plan, cluster_gpus: Collection[str] | None = None) -> PlanDiff:
    """Compare two plans as given (evaluate them first: the diff trusts the figures it is handed).

    `cluster_gpus`: the GPU ids of the new plan's cluster; old-plan GPUs missing from it are *gone*,
    not moved. Without it every old-plan GPU is taken to be still there.
    """
    pairs = match_replicas(old.replicas, new.replicas)
    matched_old = {i for i, _ in pairs}
    matched_new = {j for _, j in pairs}
    replicas = [
        ReplicaDiff(old.replicas[i], new.replicas[j], replica_changes(old.replicas[i], new.replicas[j]))
        for i, j in pairs
    ]
    replicas += [ReplicaDiff(r, None) for i, r in enumerate(old.replicas) if i not in matched_old]
    replicas += [ReplicaDiff(None, r) for j, r in enumerate(new.replicas) if j not in matched_new]
    order = {"removed": 0, "added": 1, "changed": 2, "same": 3}
    replicas.sort(key=lambda r: (order[r.kind], r.label))

    renamed = {old.replicas[i].id: new.replicas[j].id for i, j in pairs}
    old_at = {g: r for r in old.replicas for g in r.gpus}
    new_at = {g: r for r in new.replicas for g in r.gpus}
    gone = {g for g in old_at.keys() - new_at.keys() if cluster_gpus is not None and g not in cluster_gpus}
    anchor = anchor_of(((r.gpus, r.role, _layout(r)) for r in old.replicas), present=old_at.keys() - gone)
    moved = []
    for g in moved_gpus(anchor, ((r.gpus, r.role, _layout(r)) for r in new.replicas)):
        was, now = old_at[g], new_at.get(g)
        moved.append(MovedGpu(g, was.id, now.id if now else None, was.role, now.role if now else None))
    metrics = tuple(
        MetricDelta(m, a, b)
        for m in METRICS
        if (a := getattr(old.summary, m.name)) is not None and (b := getattr(new.summary, m.name)) is not None
    )
    return PlanDiff(
        metrics=metrics,
        bottleneck=(old.summary.bottleneck, new.summary.bottleneck),
        replicas=tuple(replicas),
        moved=tuple(moved),
        added_gpus=tuple(sorted(new_at.keys() - old_at.keys())),
        gone_gpus=tuple(sorted(gone)),
        routes=route_diffs(old, new, renamed),
    )


def _jsonable(value: object) -> object:
    return round_floats(list(value) if isinstance(value, tuple) else value)


def _pct(value: float | None) -> float | None:
    return None if value is None else round_floats(value)


def _replica_dict(r: ReplicaPlan) -> dict:
    return {"id": r.id, "role": r.role, "gpus": sorted(r.gpus), "tp": r.tp, "pp": r.pp, "layers": _layers(r)}


def _route_dict(r: RoutePlan | None) -> object:
    if r is None:
        return None
    return round_floats({"rate_rps": r.rate_rps, "capacity_rps": r.capacity_rps, "kv_gbps": r.kv_gbps})


def _moved_dict(m: MovedGpu) -> dict:
    return {"gpu": m.gpu, "from": m.old_replica, "to": m.new_replica, "from_role": m.old_role, "to_role": m.new_role}


def diff_to_dict(diff: PlanDiff) -> dict:
    """The JSON shape of a diff: stable keys, floats at the plan's 6-digit precision, lists sorted.
    (`hexplan diff --format json` adds the gates: planner.plans.gates.gates_to_dict.)"""
    by_kind = {kind: [r for r in diff.replicas if r.kind == kind] for kind in ("added", "removed", "changed")}
    return {
        "empty": diff.empty,
        "metrics": {
            m.metric.name: {
                "old": round_floats(m.old),
                "new": round_floats(m.new),
                "delta": round_floats(m.delta),
                "pct": _pct(m.pct),
            }
            for m in diff.metrics
        }
        | {"bottleneck": {"old": diff.bottleneck[0], "new": diff.bottleneck[1]}},
        "replicas": {
            "added": [_replica_dict(r.new) for r in by_kind["added"]],  # type: ignore[arg-type]
            "removed": [_replica_dict(r.old) for r in by_kind["removed"]],  # type: ignore[arg-type]
            "changed": [
                {
                    "old_id": r.old.id,
                    "new_id": r.new.id,  # type: ignore[union-attr]
                    "changes": {c.field: {"old": _jsonable(c.old), "new": _jsonable(c.new)} for c in r.changes},
                }
                for r in by_kind["changed"]
            ],
            "unchanged": sum(r.kind == "same" for r in diff.replicas),
        },
        "gpus": {
            "moved": [_moved_dict(m) for m in diff.moved],
            "added": list(diff.added_gpus),
            "gone": list(diff.gone_gpus),
        },
        "routes": [
            {
                "from": r.source,
                "to": r.target,
                "old": _route_dict(r.old),
                "new": _route_dict(r.new),
                "old_weight": round_floats(r.old_weight),
                "new_weight": round_floats(r.new_weight),
            }
            for r in diff.routes
        ],
    }
