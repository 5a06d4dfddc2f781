"""Property tests of the scheduler (issue 3) on seeded random clusters.

Clusters come from planner.reference.synthetic.small_cluster, go through write_cluster + load_cluster like a
user's file, and mix a model that fits one GPU (many small replicas) with ones that need TP or PP
(multi-node pipelines, TP divisibility), under the NIXL connector's rules or none. Every plan must
pass `check_plan` (tests/conftest.py): GPUs used once, stages on one node and type, memory fits,
decode PP = 1 and dividing TP sizes under NIXL, flow conservation, evaluate() agreeing. Throughput
is bounded above by the fluid LP bound and, on tiny instances, below by 98 % of the exhaustive
optimum (planner.reference.exact).

Examples are derandomized (a fixed, reproducible set) to keep the run time predictable. Wider
random runs found counterexamples to the 98 % bound; they are pinned as strict xfails in
tests/test_solver.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from planner import solve
from planner.errors import InfeasibleError
from planner.inputs.catalog import Catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.reference.bounds import fluid_upper_bound
from planner.reference.exact import TooLarge, exact_optimum
from planner.reference.synthetic import small_cluster, write_cluster

MODELS = ("llama-3.1-8b", "llama-2-13b", "qwen2.5-32b")  # one GPU; TP or PP on small cards; PP across nodes
SETTINGS = settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_cluster(catalog: Catalog, directory: Path, seed: int, model: str, max_gpus: int) -> Cluster:
    spec = small_cluster(np.random.default_rng(seed), max_gpus=max_gpus, model=model)
    return load_cluster(write_cluster(spec, directory / f"{model}-{seed}.yaml"), catalog)


@pytest.mark.slow
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), model=st.sampled_from(MODELS), connector=st.sampled_from(["nixl", "none"]))
def test_plans_are_valid_and_below_the_fluid_bound(seed, model, connector, catalog, check_plan, tmp_path_factory):
    cluster = random_cluster(catalog, tmp_path_factory.getbasetemp(), seed, model, max_gpus=8)
    try:
        plan = solve(cluster, seed=0, time_limit=3, connector=connector, verify=False)
    except InfeasibleError:
        # the scheduler may only give up when nothing can be served at all
        with contextlib.suppress(TooLarge):  # when the oracle cannot settle it in time, the refusal stands unchecked
            assert exact_optimum(cluster, launchable=connector != "none", time_limit=30).throughput_rps == 0
        return
    check_plan(plan, cluster)
    assert plan.summary.throughput_rps > 0
    assert plan.summary.throughput_rps <= fluid_upper_bound(cluster) * (1 + 1e-9)


@pytest.mark.slow
@settings(SETTINGS, max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), model=st.sampled_from(MODELS[:2]))
def test_throughput_is_near_the_exhaustive_optimum(seed, model, catalog, tmp_path_factory):
    """(Models of ≤ 40 layers: the exact oracle's enumeration of 64-layer pipelines over four nodes is
    benchmarks/optimality.py's job, not a unit test's.)"""
    cluster = random_cluster(catalog, tmp_path_factory.getbasetemp(), seed, model, max_gpus=6)
    try:
        optimum = exact_optimum(cluster, time_limit=30).throughput_rps
    except TooLarge:
        assume(False)
    if optimum == 0:
        with pytest.raises(InfeasibleError):
            solve(cluster, seed=0, time_limit=3, verify=False, roles="disaggregated")
        return
    plan = solve(cluster, seed=0, time_limit=3, verify=False, roles="disaggregated")  # the oracle's plan space
    assert plan.summary.throughput_rps >= 0.98 * optimum, (
        f"{cluster.source}: {plan.summary.throughput_rps:.4f} req/s < 98 % of the optimum {optimum:.4f}"
    )
