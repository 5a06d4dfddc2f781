"""The regression gates CI runs on a plan diff: throughput drop, moved GPUs, cost rise.

A gate fails only when its figure is strictly beyond its limit; a figure equal to the limit within
the plan file's precision (planner.plans.diff.REL_TOL) passes, so `--fail-on-regression 5` lets
exactly 5 % through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from planner.plans.diff import REL_TOL, PlanDiff
from planner.plans.schema import round_floats


@dataclass(frozen=True)
class Gates:
    """CI limits; None disables a gate. Percentages are of the old plan's figure."""

    max_regression_pct: float | None = None
    max_moved_gpus: int | None = None
    max_cost_increase_pct: float | None = None


@dataclass(frozen=True)
class GateResult:
    name: str
    limit: float
    value: float  # math.inf when the relative change is undefined (old figure 0)
    passed: bool
    detail: str


def exceeds(value: float, limit: float) -> bool:
    """True when `value` is beyond `limit`; a value equal to it (within REL_TOL) passes."""
    return value > limit and not math.isclose(value, limit, rel_tol=REL_TOL, abs_tol=1e-9)


def check_gates(diff: PlanDiff, gates: Gates) -> tuple[GateResult, ...]:
    """Evaluate every enabled gate. A gate fails only when its figure is strictly beyond its limit.

    Throughput regression = -Δ% of throughput_rps; cost increase = Δ% of cost_per_hour_usd; an undefined
    Δ% (old figure 0) counts as +∞. Moved GPUs = len(diff.moved).
    """
    results = []
    if (limit := gates.max_regression_pct) is not None:
        t = diff.metric("throughput_rps")
        drop = -(t.pct if t.pct is not None else math.inf)
        detail = f"throughput {t.old:.6g} → {t.new:.6g} req/s ({-drop:+.4g}%; may drop at most {limit:g}%)"
        results.append(GateResult("throughput regression", limit, max(drop, 0.0), not exceeds(drop, limit), detail))
    if (most := gates.max_moved_gpus) is not None:
        n = len(diff.moved)
        detail = f"{n} GPU(s) change replica or role or stop serving (at most {most} may)"
        results.append(GateResult("moved GPUs", most, n, n <= most, detail))
    if (limit := gates.max_cost_increase_pct) is not None:
        c = diff.metric("cost_per_hour_usd")
        rise = c.pct if c.pct is not None else math.inf
        detail = f"cost ${c.old:.6g} → ${c.new:.6g} per hour ({rise:+.4g}%; may rise at most {limit:g}%)"
        results.append(GateResult("cost increase", limit, max(rise, 0.0), not exceeds(rise, limit), detail))
    return tuple(results)


def gates_to_dict(gates: Sequence[GateResult]) -> dict:
    """The JSON shape of gate results (merged into a diff's by `hexplan diff --format json`)."""
    return {
        "passed": all(g.passed for g in gates),
        "gates": [
            {
                "name": g.name,
                "limit": round_floats(g.limit),
                "value": round_floats(g.value) if math.isfinite(g.value) else None,
                "passed": g.passed,
                "detail": g.detail,
            }
            for g in gates
        ],
    }
