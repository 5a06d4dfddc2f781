"""hexgen2 planner: place an LLM on heterogeneous GPUs with prefill and decode disaggregated.

The functions below are the public API, kept stable for scripts:

    import planner
    catalog = planner.load_catalog()
    cluster = planner.load_cluster("examples/tiny.yaml", catalog)
    plan = planner.solve(cluster, seed=0, time_limit=30)
    planner.write_plan(plan, "plan.yaml")
    result = planner.simulate(plan, cluster, rate=10, duration=120)

Each imports what it needs when called, so `import planner` is cheap and loads no algorithm.
Expected failures raise planner.errors.PlannerError subclasses with a one-paragraph message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from planner.inputs.catalog import Catalog
    from planner.inputs.problem import Cluster, Slo
    from planner.inputs.workload import Trace
    from planner.plans.schema import DraftPlan, Plan
    from planner.provision.results import Provisioned
    from planner.sim.metrics import SimResult
    from planner.types import Connector, Objective, RolesMode

__version__ = "0.1.0"

__all__ = [
    "evaluate",
    "load_catalog",
    "load_cluster",
    "provision_offers",
    "read_plan",
    "simulate",
    "solve",
    "write_plan",
]


def load_catalog(profiles: Iterable[str | Path] = ()) -> Catalog:
    """The GPU, link and model catalogue: profiles/*.yaml, then each extra directory's *.yaml on top."""
    from planner.inputs.catalog import load_catalog as load

    return load(Path(p) for p in profiles)


def load_cluster(path: str | Path, catalog: Catalog | None = None) -> Cluster:
    """Read and validate a cluster file (README: cluster.yaml) against `catalog` (default: load_catalog())."""
    from planner.inputs.cluster import load_cluster as load

    return load(Path(path), catalog if catalog is not None else load_catalog())


def solve(
    cluster: Cluster,
    *,
    seed: int = 0,
    time_limit: float = 60.0,
    connector: Connector = "nixl",
    objective: Objective | None = None,
    roles: RolesMode = "mixed",
    verify: bool | None = None,
    colocated: bool | None = None,
    baseline: Plan | None = None,
    max_moved_gpus: int | None = None,
    max_loss: float = 0.05,
    progress: Callable[[float, float], None] | None = None,
) -> Plan:
    """The best plan the scheduler finds within `time_limit` seconds (`hexplan solve`).

    `objective` defaults to the cluster file's, else goodput when the cluster has an SLO, else throughput.
    `roles`: "mixed" (default: prefill, decode or colocated per group), "disaggregated" (HexGen-2) or
    "colocated"; `colocated=True` is the deprecated spelling of "mixed", `colocated=False` of
    "disaggregated". `verify` re-ranks the search's best candidates (and the reference planners' plans)
    by simulation (default: planner.reference.verify.verifies_by_default). `baseline` (a running plan)
    re-plans close to it, moving at most `max_moved_gpus` GPUs or, without that cap, giving up at most
    `max_loss` of the free optimum's throughput (no verification). `progress(fraction of the time used,
    best rate so far)` is called as the search improves. Same inputs and seed, same plan (whenever the
    search converges before the time limit: `plan.solver.converged`).
    """
    from planner.plans.assemble import plan_from_search, running_engines
    from planner.reference.verify import solve_verified
    from planner.scheduler.replan import replan

    if colocated is not None:
        roles = "mixed" if colocated else "disaggregated"
    common = {"seed": seed, "time_limit": time_limit, "connector": connector, "objective": objective}
    common |= {"roles": roles, "progress": progress}
    if baseline is not None:
        result = replan(cluster, running_engines(baseline), max_moved_gpus=max_moved_gpus, max_loss=max_loss, **common)
        return plan_from_search(cluster, result)
    if max_moved_gpus is not None:
        raise ValueError("solve(): max_moved_gpus needs a baseline plan (the one whose GPUs should stay put)")
    return solve_verified(cluster, verify=verify, **common)


def evaluate(plan: Plan | DraftPlan | str | Path, cluster: Cluster) -> Plan:
    """`plan` with every figure recomputed on `cluster` (`hexplan evaluate`); raises PlanError if it cannot run.

    A path is read leniently: a draft (replicas with id, role, gpus, tp, pp and stages, no summary)
    gets its routes from the max-flow and every figure from the cost model. Goodput is computed under the
    plan's SLO, else the cluster's (planner.plans.slo).
    """
    from planner.plans.checks import evaluate as recompute
    from planner.plans.schema import read_plan_or_draft
    from planner.plans.slo import resolve_slo, with_slo

    if isinstance(plan, str | Path):
        plan = read_plan_or_draft(Path(plan))
    slo, _ = resolve_slo(plan, cluster)
    return recompute(plan, with_slo(cluster, slo))


def read_plan(path: str | Path) -> Plan:
    """A plan file, validated against the schema (`hexplan schema plan`)."""
    from planner.plans.schema import read_plan as read

    return read(Path(path))


def write_plan(plan: Plan, path: str | Path) -> None:
    """Write plan.yaml deterministically (sorted keys, 6 significant digits), atomically."""
    from planner.plans.schema import write_plan as write

    write(plan, Path(path))


def simulate(
    plan: Plan,
    cluster: Cluster,
    *,
    rate: float | None = None,
    duration: float | None = None,
    trace: Trace | str | Path | None = None,
    speedup: float = 1.0,
    seed: int = 0,
    slo: Slo | None = None,
) -> SimResult:
    """Simulate `plan` serving requests (`hexplan simulate`), routed as the launcher's router does.

    Poisson arrivals at `rate` req/s (default 80 % of the plan's throughput) for `duration` s (default
    300), or a replayed `trace` (CSV path or Trace; timestamps divided by `speedup`, cut at `duration`).
    Attainment is measured against `slo`, else the plan's SLO, else the cluster's; without any it is
    not defined (NaN).
    """
    from planner.errors import InputError
    from planner.plans.slo import resolve_slo, with_slo
    from planner.sim import arrivals, sweeps

    cluster = with_slo(cluster, slo if slo is not None else resolve_slo(plan, cluster)[0])
    if trace is None:
        offered = rate or sweeps.default_rate(plan)
        return sweeps.simulate_rate(plan, cluster, offered, duration=duration or sweeps.DEFAULT_DURATION_S, seed=seed)
    if isinstance(trace, str | Path):
        from planner.inputs.workload import read_trace

        trace = read_trace(Path(trace))
    replayed = arrivals.replay(trace, speedup, duration)
    if len(replayed) == 0:
        raise InputError(f"simulate(): no request of the trace arrives within {duration} s.")
    return sweeps.simulate_replay(plan, cluster, replayed, seed=seed)


def provision_offers(
    offers: str | Path,
    output_dir: str | Path,
    *,
    budget: float | None = None,
    target_rps: float | None = None,
    catalog: Catalog | None = None,
    candidates: int = 4,
    seed: int = 0,
    time_limit: float = 10.0,
    connector: Connector = "nixl",
    roles: RolesMode = "mixed",
    verify: bool | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Provisioned:
    """Which GPUs to rent from an offers file (`hexplan provision`), for a `budget` ($/h: most goodput) or a
    `target_rps` (least $/h); give exactly one. Writes nothing: `result.chosen.text` is the cluster file
    for OUTPUT_DIR/cluster.yaml and `result.chosen.plan` the plan `solve` makes of it (same seed and
    options: connector, roles, verify); planner.provision.output.write_outputs writes both.
    Raises InfeasibleError (README: provision).
    """
    from planner.provision.offers import load_offers
    from planner.provision.output import output_paths
    from planner.provision.search import Request
    from planner.provision.search import provision as run

    catalog = catalog if catalog is not None else load_catalog()
    request = Request(budget, target_rps, candidates, seed, time_limit, connector, roles, verify)
    where, _ = output_paths(Path(output_dir))
    return run(load_offers(Path(offers), catalog), catalog, where, request, progress)
