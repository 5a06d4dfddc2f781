"""Which SLO a command that reads a plan uses, and where it came from.

Rule (one place for every command: evaluate, check, simulate, compare, diff): the SLO given on the
command line, field by field, over the plan's own (`slo` in plan.yaml, written by `hexplan solve`
whenever it had one), else the cluster file's (workload.slo). Without any, there is no SLO and goodput
is not defined — never a silent default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from planner.inputs.problem import Cluster, Slo
from planner.plans.schema import DraftPlan, Plan


@dataclass(frozen=True)
class SloOverride:
    """SLO fields given on the command line (None: not given)."""

    ttft: float | None = None
    tpot: float | None = None
    attainment: float | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.ttft, self.tpot, self.attainment))


def plan_slo(plan: Plan | DraftPlan) -> Slo | None:
    slo = plan.slo
    return Slo(slo.ttft_s, slo.tpot_s, slo.attainment) if slo is not None else None


def resolve_slo(
    plan: Plan | DraftPlan | None, cluster: Cluster, override: SloOverride | None = None, *, plan_name: str = "plan"
) -> tuple[Slo | None, str]:
    """(the SLO to use, where it came from, e.g. 'from plan.yaml'); see the module docstring."""
    base, source = None, ""
    if plan is not None and (base := plan_slo(plan)) is not None:
        source = f"from {plan_name}"
    elif cluster.slo is not None:
        base, source = cluster.slo, f"from {cluster.source}"
    if override is None or not override.given:
        return base, source
    if base is None and override.ttft is None and override.tpot is None:
        return None, ""  # an attainment alone constrains nothing
    slo = Slo(
        override.ttft if override.ttft is not None else (base.ttft if base else None),
        override.tpot if override.tpot is not None else (base.tpot if base else None),
        override.attainment if override.attainment is not None else (base.attainment if base else 0.9),
    )
    return slo, "from the command line" + (f" over {source.removeprefix('from ')}" if base is not None else "")


def with_slo(cluster: Cluster, slo: Slo | None) -> Cluster:
    """The cluster with `slo` as the SLO every figure is computed under."""
    return cluster if cluster.slo == slo else dataclasses.replace(cluster, slo=slo)


def slo_line(slo: Slo | None, source: str) -> str:
    """What commands print: 'SLO: ttft ≤ 1s, tpot ≤ 100ms, attainment 90% (from plan.yaml)'."""
    if slo is None:
        return "SLO: none given, so goodput is not defined"
    return f"SLO: {slo.describe()} ({source})"
