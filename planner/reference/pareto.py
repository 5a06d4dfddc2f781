"""`hexplan solve --pareto`: the goodput frontier over a sweep of TTFT × TPOT SLOs.

Each SLO pair of the grid is solved as `hexplan solve` would (same roles, verification default and
seed) and gives a point: the plan's goodput within that SLO, its price and a summary of the plan. A point
is on the frontier when no other point has an SLO at least as tight on both and at least as much goodput
(strictly better in one of the three): the operator's menu of "this latency costs that much rate".

The JSON form (`--json`, `ParetoPoint.to_json`) is a list of points with these keys, stable for tools
that plot it: ttft_s, tpot_s, attainment, goodput_rps (0 when no plan serves that SLO), usd_per_hour,
throughput_rps, gpus_used, replicas ({role: count}), bottleneck, frontier (bool), simulated_goodput_rps
(the verifier's figure, or null), infeasible (the reason, or null). Points come in grid order: TTFT
ascending, then TPOT ascending.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from planner.errors import InfeasibleError
from planner.inputs.problem import Cluster, Slo
from planner.reference.verify import solve_verified
from planner.types import RolesMode

DEFAULT_TTFTS = "0.5s,1s,2s,4s"
DEFAULT_TPOTS = "50ms,100ms,200ms"


@dataclass(frozen=True)
class ParetoPoint:
    ttft_s: float
    tpot_s: float
    attainment: float
    goodput_rps: float
    usd_per_hour: float
    throughput_rps: float
    gpus_used: int
    replicas: dict[str, int]
    bottleneck: str
    simulated_goodput_rps: float | None
    infeasible: str | None
    frontier: bool = False

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def dominates(self, other: ParetoPoint) -> bool:
        mine = (self.ttft_s, self.tpot_s, -self.goodput_rps)
        theirs = (other.ttft_s, other.tpot_s, -other.goodput_rps)
        return all(a <= b for a, b in zip(mine, theirs)) and mine != theirs


def _point(
    cluster: Cluster, slo: Slo, *, seed: int, time_limit: float, roles: RolesMode, verify: bool | None
) -> ParetoPoint:
    assert slo.ttft is not None and slo.tpot is not None
    try:
        plan = solve_verified(
            dataclasses.replace(cluster, slo=slo), seed=seed, time_limit=time_limit, roles=roles, verify=verify
        )
    except InfeasibleError as exc:
        return ParetoPoint(slo.ttft, slo.tpot, slo.attainment, 0.0, 0.0, 0.0, 0, {}, "none", None, exc.message)
    s = plan.summary
    verified = plan.solver.verification
    return ParetoPoint(
        ttft_s=slo.ttft,
        tpot_s=slo.tpot,
        attainment=slo.attainment,
        goodput_rps=s.goodput_rps or 0.0,
        usd_per_hour=s.cost_per_hour_usd,
        throughput_rps=s.throughput_rps,
        gpus_used=s.gpus_used,
        replicas=dict(sorted(Counter(r.role for r in plan.replicas).items())),
        bottleneck=s.bottleneck,
        simulated_goodput_rps=verified.simulated_rps if verified is not None else None,
        infeasible=None,
    )


def pareto_frontier(
    cluster: Cluster,
    ttfts: Sequence[float],
    tpots: Sequence[float],
    *,
    attainment: float = 0.9,
    seed: int = 0,
    time_limit: float = 60.0,
    roles: RolesMode = "mixed",
    verify: bool | None = None,
) -> list[ParetoPoint]:
    """Every grid point, solved, with `frontier` set on the non-dominated ones (module docstring)."""
    points = [
        _point(cluster, Slo(ttft, tpot, attainment), seed=seed, time_limit=time_limit, roles=roles, verify=verify)
        for ttft in sorted(set(ttfts))
        for tpot in sorted(set(tpots))
    ]
    return [
        dataclasses.replace(p, frontier=p.goodput_rps > 0 and not any(q.dominates(p) for q in points)) for p in points
    ]
