"""provision end to end: assess each offer's replicas, let the cut propose mixes, plan the best in full.

1. kinds.replica_kinds: per offer (GPU type × node shape), every replica size in every role, assessed by
   the cost model under the SLO.
2. cut.proposals: the integer program proposes the `candidates` best mixes (budget: most goodput, then
   least cost; target: least cost, then most goodput), and the best mix of each single GPU type.
3. Each proposed mix becomes a cluster file (mixes.mix_cluster) and is planned in full by
   `planner.solve` (time-limited, seeded), which sees what the cut ignores: KV links, NICs, the network,
   replicas mixing GPU types. The plans decide: budget — the most goodput (then the lower cost);
   target — the lowest cost whose plan reaches the target (then the more goodput).
Deterministic: the kinds, the programs (HiGHS) and the seeded solves are; ties go to the earlier mix in
the cut's order. Expected failures raise InfeasibleError naming the offers file and the mix in question.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import planner
from planner.errors import InfeasibleError
from planner.inputs.catalog import Catalog
from planner.provision.cut import EQUAL_GOODPUT, CutMix, Program, proposals
from planner.provision.kinds import MAX_SPAN, ReplicaKind, replica_kinds
from planner.provision.mixes import describe, mix_cluster
from planner.provision.offers import Offers
from planner.provision.results import Candidate, Provisioned
from planner.types import Connector, Role, RolesMode

Progress = Callable[[str, int, int], None]  # (what is being done, steps done, steps in all)
ANY_GOODPUT = 1e-3  # requests/s: "serves at all" (well above the integer program's feasibility tolerance)


@dataclass(frozen=True)
class Request:
    """What to provision for: exactly one of `budget` ($/h) and `target` (requests/s), and how to plan."""

    budget: float | None = None
    target: float | None = None
    candidates: int = 4
    seed: int = 0
    time_limit: float = 10.0
    connector: Connector = "nixl"
    roles: RolesMode = "mixed"
    verify: bool | None = None  # solve's default

    def __post_init__(self) -> None:
        if (self.budget is None) == (self.target is None):
            raise ValueError("Request: give exactly one of budget and target")

    @property
    def replica_roles(self) -> tuple[Role, ...]:
        """The roles replicas may take under `roles` (as in the scheduler)."""
        return {"mixed": ("prefill", "decode", "colocated"), "disaggregated": ("prefill", "decode")}.get(
            self.roles, ("colocated",)
        )


def _reach(offers: Offers, program: Program, slo: bool) -> CutMix:
    """The cut's best mix with no budget; InfeasibleError when no mix serves the model at all."""
    best = program.best()
    if best is None or best.goodput_rps <= 0:
        raise InfeasibleError(
            f"{offers.source}: {offers.model_name} ({offers.weights_bytes / 1e9:.0f} GB of weights) fits on no "
            f"offered combination: no group of up to {MAX_SPAN} nodes of one offer holds it as both a prefill and "
            "a decode replica" + (" within the SLO" if slo else "") + ".",
            hint="offer GPUs with more memory or more GPUs per node, raise max_gpus, relax the SLO, or use dtype fp8",
        )
    return best


def _check_request(offers: Offers, program: Program, request: Request, reach: CutMix) -> None:
    """InfeasibleError when the budget buys no serving mix or no mix reaches the target (cut estimates)."""
    if request.budget is not None:
        cheapest = program.best(target=ANY_GOODPUT)
        assert cheapest is not None  # reach exists, so some mix serves
        if cheapest.cost_per_hour > request.budget:
            raise InfeasibleError(
                f"{offers.source}: a budget of ${request.budget:.2f}/h buys no mix that serves {offers.model_name}: "
                f"the cheapest is {describe(offers, cheapest.mix)} at ${cheapest.cost_per_hour:.2f}/h "
                f"(about {cheapest.goodput_rps:.3g} req/s by the first cut).",
                hint=f"raise --budget to at least ${cheapest.cost_per_hour:.2f}/h, or offer cheaper GPUs",
            )
    elif request.target is not None and reach.goodput_rps < request.target:
        raise InfeasibleError(
            f"{offers.source}: no mix within the offers' limits reaches {request.target:g} req/s: the best "
            f"reachable is {describe(offers, reach.mix)} at ${reach.cost_per_hour:.2f}/h, about "
            f"{reach.goodput_rps:.3g} req/s by the first cut (cost model, KV links ignored).",
            hint="lower --target-rps, raise the offers' max_gpus, or relax the SLO",
        )


def _plan(offers: Offers, proposal: CutMix, where: Path, request: Request, catalog: Catalog) -> Candidate:
    """The mix planned in full, as `hexplan solve WHERE` would plan it."""
    cluster, text = mix_cluster(offers, proposal.mix, where, catalog)
    began = time.monotonic()
    options = {"seed": request.seed, "time_limit": request.time_limit, "connector": request.connector}
    try:
        plan, problem = planner.solve(cluster, roles=request.roles, verify=request.verify, **options), ""
    except InfeasibleError as exc:
        plan, problem = None, exc.message
    seconds = time.monotonic() - began
    label = describe(offers, proposal.mix)
    return Candidate(proposal, label, len(cluster.gpus), text, plan, cluster.workload.output.mean, seconds, problem)


def _single_type_proposals(offers: Offers, kinds: Sequence[ReplicaKind], request: Request) -> tuple[list[CutMix], int]:
    """Per GPU type (in the order the offers name them), the cut's best mix of that type alone."""
    found, programs = [], 0
    for key in dict.fromkeys(o.gpu.key for o in offers.offers):
        allowed = frozenset(o.index for o in offers.offers if o.gpu.key == key)
        best, solved = proposals(offers, kinds, 1, budget=request.budget, target=request.target, allowed=allowed)
        found += best
        programs += solved
    return found, programs


def rank_key(request: Request, candidates: Sequence[Candidate]) -> Callable[[tuple[int, Candidate]], tuple]:
    """Sort key of (cut order, candidate), best first. Budget: goodput within 0.1 % of the best counts as
    the best (the cost model is not more precise), then cheaper, then more goodput. Target: reaching it,
    then cheaper, then more goodput. Ties go to the earlier in the cut's order."""
    if request.target is None:
        best = max((c.goodput_rps for c in candidates), default=0.0)
        return lambda item: (
            item[1].goodput_rps < best * (1 - EQUAL_GOODPUT),
            item[1].cost_per_hour if item[1].goodput_rps >= best * (1 - EQUAL_GOODPUT) else -item[1].goodput_rps,
            -item[1].goodput_rps,
            item[0],
        )
    target = request.target
    return lambda item: (
        item[1].goodput_rps < target,
        item[1].cost_per_hour if item[1].goodput_rps >= target else -item[1].goodput_rps,
        -item[1].goodput_rps,
        item[0],
    )


def provision(
    offers: Offers, catalog: Catalog, where: Path, request: Request, progress: Progress | None = None
) -> Provisioned:
    """The mix to rent for `request`, its cluster file (to be written at `where`) and its plan.

    Raises InfeasibleError: the model fits on no offered combination; the budget is below the cheapest
    serving mix; no mix within the offers' limits reaches the target; in target mode, no planned mix does.
    """
    report = progress or (lambda what, done, total: None)
    began = time.monotonic()
    report("assessing replicas", 0, 1)
    kinds = replica_kinds(offers, request.replica_roles, request.connector != "none", catalog)
    unlimited = Program(offers, kinds)
    _check_request(offers, unlimited, request, _reach(offers, unlimited, offers.has_slo))
    mixed, programs = proposals(offers, kinds, request.candidates, budget=request.budget, target=request.target)
    singles, more = _single_type_proposals(offers, kinds, request)
    cut_seconds = time.monotonic() - began
    order = list({p.mix: p for p in [*mixed, *singles]}.values())
    planned: dict[tuple[int, ...], Candidate] = {}
    for i, proposal in enumerate(order):
        report(f"planning {describe(offers, proposal.mix)}", i, len(order))
        planned[proposal.mix] = _plan(offers, proposal, where, request, catalog)
    report("done", len(order), len(order))
    ranked = sorted(enumerate(planned[p.mix] for p in order), key=rank_key(request, list(planned.values())))
    chosen = ranked[0][1]
    if chosen.plan is None:
        raise InfeasibleError(
            f"{offers.source}: none of the {len(order)} mixes the first cut proposed can be planned; "
            f"{chosen.label}: {chosen.problem}",
            hint="check the network between nodes (network.default, the offers' nic), or relax the SLO",
        )
    if request.target is not None and chosen.goodput_rps < request.target:
        raise InfeasibleError(
            f"{offers.source}: the {len(order)} cheapest mixes that reach {request.target:g} req/s by the first cut "
            f"fall short once planned in full: the best, {chosen.label} at ${chosen.cost_per_hour:.2f}/h, plans "
            f"{chosen.goodput_rps:.3g} req/s (bottleneck: {chosen.bottleneck}).",
            hint="raise --candidates to plan more mixes, or lower --target-rps",
        )
    single_keys = {p.mix for p in singles}
    singles_ranked = [c for _, c in ranked if c.mix in single_keys]
    return Provisioned(
        chosen=chosen,
        candidates=tuple(planned[p.mix] for p in mixed),
        single_type=singles_ranked[0] if singles_ranked else None,
        kinds=len(kinds),
        programs=unlimited.solved + programs + more,
        cut_seconds=cut_seconds,
        solves=len(planned),
        solve_seconds=sum(c.seconds for c in planned.values()),
        converged=sum(c.converged for c in planned.values()),
    )
