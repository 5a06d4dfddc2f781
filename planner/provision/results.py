"""What provision found: the mixes it planned in full, and the figures the table shows for each.

`plan_goodput` is the one place that says what "goodput" of a plan means here: `summary.goodput_rps`
(requests/s of which at least the SLO's attainment meet it) when the plan has an SLO, else
`summary.throughput_rps` (no SLO, no goodput: the saturated max-flow throughput).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.plans.schema import Plan
from planner.provision.cut import CutMix
from planner.provision.mixes import Mix


def plan_goodput(plan: Plan) -> float:
    """Requests/s the plan serves within its SLO (see the module docstring)."""
    goodput = getattr(plan.summary, "goodput_rps", None)
    return float(goodput if goodput is not None else plan.summary.throughput_rps)


@dataclass(frozen=True)
class Candidate:
    """One mix planned in full: its cluster file's text, its plan (None when no plan serves), the solve time."""

    proposal: CutMix
    label: str
    gpus: int
    text: str
    plan: Plan | None
    output_tokens: float  # mean generated tokens per request (the workload's)
    seconds: float
    problem: str = ""  # why there is no plan

    @property
    def mix(self) -> Mix:
        return self.proposal.mix

    @property
    def cost_per_hour(self) -> float:
        """What renting every node of the mix costs, used by the plan or not."""
        return self.proposal.cost_per_hour

    @property
    def goodput_rps(self) -> float:
        return plan_goodput(self.plan) if self.plan is not None else 0.0

    @property
    def usd_per_million_tokens(self) -> float:
        """$ per million output tokens served within the SLO, at the mix's full rent; inf when it serves none."""
        tokens_per_hour = self.goodput_rps * self.output_tokens * 3600
        return self.cost_per_hour / tokens_per_hour * 1e6 if tokens_per_hour > 0 else float("inf")

    @property
    def bottleneck(self) -> str:
        return self.plan.summary.bottleneck if self.plan is not None else "no plan"

    @property
    def converged(self) -> bool:
        return self.plan is not None and self.plan.solver.converged


@dataclass(frozen=True)
class Provisioned:
    """provision's answer: the chosen candidate, every candidate planned (the cut's order), the best
    single-GPU-type candidate, and what the search cost."""

    chosen: Candidate
    candidates: tuple[Candidate, ...]
    single_type: Candidate | None
    kinds: int  # replica kinds assessed
    programs: int  # integer programs solved
    cut_seconds: float
    solves: int  # full solves
    solve_seconds: float
    converged: int  # full solves that converged before their time limit
