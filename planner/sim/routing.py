"""Which prefill and which decode replica serve a request: the plan's max-flow, made per-request.

One policy for both consumers: the launcher's router (launcher.router) runs it on live requests and
the simulator's front end (planner.sim.engine) on simulated ones, so `hexplan simulate` models the
system `hexlaunch` starts. Pure, no I/O, no Ray: tested without servers.

Policy:
- prefill (and colocated) replicas are weighted by the flow the plan sends through them (the sum of their
  routes' rate_rps; a colocated replica by its rate within the SLO, else its capacity). Among the replicas
  whose outstanding requests are below their limit (the plan's max_num_seqs), the next one is chosen by
  *smooth weighted round robin* (the nginx scheme): each pick adds every eligible weight to a running
  credit, takes the largest credit and charges it the eligible total. Over any n requests a replica's share
  differs from its weight share by less than one request, so the observed split follows the plan without
  sampling noise; a saturated replica is skipped until it drains. When every replica is saturated, all are
  eligible again (the engines queue). Replicas the caller marks unavailable (unhealthy, ejected) are skipped
  the same way, so the others absorb their share in the plan's proportions.
- decode: the same scheme over the P→D routes *from the chosen prefill*, weighted by their rate_rps,
  so each pair's share of the traffic is the plan's flow on that edge.
The seed sets the initial credits (a phase offset), so two routers with different seeds do not send
their first requests to the same replica; the same seed gives the same sequence of choices.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from planner.plans.schema import Plan, ReplicaPlan

UNLIMITED = 2**62  # the limit of a replica that names none
NO_TRAFFIC = "the plan routes no traffic: no P→D route and no colocated replica has a positive rate."


@dataclass(frozen=True)
class RouteWeight:
    source: str
    target: str
    weight: float


@dataclass(frozen=True)
class PlannedRouting:
    """What the policy reads from a plan: route rates, colocated capacities, per-replica request limits."""

    routes: tuple[RouteWeight, ...]
    colocated_weights: Mapping[str, float]
    limits: Mapping[str, int]  # replica id → max_num_seqs: more requests in flight only queue in the engine

    @classmethod
    def of(cls, plan: Plan) -> PlannedRouting:
        return cls(
            routes=tuple(RouteWeight(r.source, r.target, r.rate_rps) for r in plan.routes),
            colocated_weights={r.id: _colocated_rate(r) for r in plan.replicas if r.role == "colocated"},
            limits={r.id: r.engine.max_num_seqs for r in plan.replicas},
        )

    @property
    def routes_traffic(self) -> bool:
        return any(r.weight > 0 for r in self.routes) or any(w > 0 for w in self.colocated_weights.values())


def _colocated_rate(replica: ReplicaPlan) -> float:
    """A colocated replica's share of the plan's flow: its rate within the SLO when the plan has one (the
    flow the routes carry then, too), else its saturated capacity (its own source→sink arc is always full)."""
    return replica.goodput_rps if replica.goodput_rps is not None else replica.capacity_rps


class SmoothWeighted:
    """Smooth weighted round robin over named items (O(k) per pick for k items)."""

    def __init__(self, weights: Mapping[str, float], rng: np.random.Generator) -> None:
        self.weights = {k: float(w) for k, w in sorted(weights.items()) if w > 0}
        if not self.weights:
            raise ValueError("smooth weighted round robin needs at least one positive weight")
        self.credit = {k: float(rng.uniform(0.0, w)) for k, w in self.weights.items()}

    def pick(self, eligible: Collection[str] | None = None) -> str:
        """The next item among `eligible` (all when None or when none is eligible); O(k), pass a set."""
        weights, credit = self.weights, self.credit
        names = [k for k in weights if k in eligible] if eligible is not None else []
        best, best_credit, total = "", -math.inf, 0.0
        for k in names or weights:
            credit[k] += weights[k]
            total += weights[k]
            if credit[k] > best_credit:  # strictly: the first of equal credits wins (names are sorted)
                best, best_credit = k, credit[k]
        credit[best] -= total
        return best


class RoutingPolicy:
    """Per-request choice of (first replica, decode replica or None for colocated)."""

    def __init__(
        self,
        limits: Mapping[str, int],
        routes: Sequence[RouteWeight],
        colocated_weights: Mapping[str, float],
        seed: int,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.limits = dict(limits)
        outflow: dict[str, dict[str, float]] = {}
        for route in routes:
            if route.weight > 0:
                outflow.setdefault(route.source, {})[route.target] = route.weight
        entry = {p: sum(ds.values()) for p, ds in outflow.items()}
        entry.update({c: w for c, w in colocated_weights.items() if w > 0})
        if not entry:
            raise ValueError(NO_TRAFFIC)
        self.first = SmoothWeighted(entry, rng)
        self._entry_limits = [(k, self.limits.get(k, UNLIMITED)) for k in self.first.weights]
        self.second = {p: SmoothWeighted(ds, rng) for p, ds in sorted(outflow.items())}

    @classmethod
    def for_plan(cls, plan: Plan, seed: int) -> RoutingPolicy:
        planned = PlannedRouting.of(plan)
        return cls(planned.limits, planned.routes, planned.colocated_weights, seed)

    def choose(self, outstanding: Mapping[str, int], unavailable: Collection[str] = ()) -> tuple[str, str | None]:
        """(prefill or colocated id, decode id or None); `outstanding` counts in-flight requests per id.

        `unavailable` (unhealthy, ejected, or already failed for this request) are skipped; when that leaves
        nothing, every replica is eligible again (the caller's attempt then fails fast and says why).
        """
        full = {k for k, limit in self._entry_limits if outstanding.get(k, 0) >= limit}
        up = self.first.weights.keys() - set(unavailable)
        first = self.first.pick(up - full or up)  # an empty set: every replica
        second = self.second.get(first)
        if second is None:
            return first, None
        return first, second.pick(second.weights.keys() - set(unavailable))

    def weights(self) -> dict[tuple[str, str | None], float]:
        """Each pair's planned share of the traffic (sums to 1): what observed counts should approach."""
        total = sum(self.first.weights.values())
        shares: dict[tuple[str, str | None], float] = {}
        for p, w in self.first.weights.items():
            second = self.second.get(p)
            if second is None:
                shares[(p, None)] = w / total
                continue
            out = sum(second.weights.values())
            for d, wd in second.weights.items():
                shares[(p, d)] = w / total * wd / out
        return shares
