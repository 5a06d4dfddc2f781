"""The public API (planner/__init__.py): each function against the CLI's behaviour or an independent fact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import EXAMPLES, ROOT

import planner
from planner.errors import InputError, PlanError
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan
from planner.sim.arrivals import poisson
from planner.sim.engine import Simulation
from planner.sim.sweeps import default_rate  # noqa: F401  (the module the API wraps)


@pytest.fixture(scope="module")
def tiny() -> tuple[Plan, Cluster]:
    cluster = planner.load_cluster(EXAMPLES / "tiny.yaml")
    return planner.solve(cluster, seed=0, time_limit=60, verify=False, roles="disaggregated"), cluster


def test_load_catalog_reads_extra_profile_directories(tmp_path: Path) -> None:
    base = planner.load_catalog()
    assert "H100-SXM" in base.gpus and "llama-3.1-8b" in base.models
    (tmp_path / "mine.yaml").write_text(
        "gpus:\n  MY-GPU:\n    name: Mine\n    memory: 24GB\n    memory_bandwidth: 900GB/s\n    fp16: 100TFLOPS\n"
    )
    extended = planner.load_catalog([tmp_path])
    assert extended.gpu("MY-GPU").memory == 24e9 and "MY-GPU" not in base.gpus


def test_load_cluster_with_and_without_a_catalog() -> None:
    catalog = planner.load_catalog()
    given = planner.load_cluster(EXAMPLES / "tiny.yaml", catalog)
    default = planner.load_cluster(str(EXAMPLES / "tiny.yaml"))
    assert len(given.gpus) == len(default.gpus) == 8 and given.sha256 == default.sha256
    with pytest.raises(InputError, match="no such file"):
        planner.load_cluster(EXAMPLES / "missing.yaml")


def test_solve_writes_the_golden_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API and `hexplan solve` are one code path: same input and seed, the same bytes as the golden file."""
    monkeypatch.chdir(ROOT)  # the plan records the cluster path as given, as the golden's command does
    plan = planner.solve(planner.load_cluster("examples/tiny.yaml"), seed=0, time_limit=120)
    planner.write_plan(plan, tmp_path / "plan.yaml")
    assert (tmp_path / "plan.yaml").read_text() == (ROOT / "tests" / "golden" / "tiny.plan.yaml").read_text()
    assert planner.read_plan(tmp_path / "plan.yaml") == planner.read_plan(ROOT / "tests" / "golden" / "tiny.plan.yaml")


def test_solve_with_a_baseline_and_no_moves_keeps_every_replica(tiny) -> None:
    plan, cluster = tiny
    again = planner.solve(cluster, seed=0, time_limit=30, baseline=plan, max_moved_gpus=0)
    assert again.solver.moved_gpus == 0
    assert {frozenset(r.gpus) for r in again.replicas} >= {frozenset(r.gpus) for r in plan.replicas}
    with pytest.raises(ValueError, match="needs a baseline"):
        planner.solve(cluster, max_moved_gpus=2)


def test_evaluate_recomputes_what_a_file_claims(tiny) -> None:
    plan, cluster = tiny
    inflated = plan.model_copy(update={"summary": plan.summary.model_copy(update={"throughput_rps": 1e6})})
    assert planner.evaluate(inflated, cluster) == planner.evaluate(plan, cluster)
    assert planner.evaluate(inflated, cluster).summary.throughput_rps == plan.summary.throughput_rps


def test_evaluate_a_draft_gets_routes_from_the_max_flow(tiny, tmp_path: Path) -> None:
    """A hand-written plan with only replica layouts evaluates to the solver's plan, routes included."""
    plan, cluster = tiny
    replicas = [r.model_dump(include={"id", "role", "gpus", "tp", "pp", "stages"}) for r in plan.replicas]
    draft = tmp_path / "draft.yaml"
    draft.write_text(yaml.safe_dump({"model": plan.model, "replicas": replicas}))
    honest = planner.evaluate(draft, cluster)
    assert honest.routes == plan.routes and honest.summary == plan.summary and honest.replicas == plan.replicas
    assert honest.solver.name == "hand-written"
    broken = [{**replicas[0], "stages": [{**replicas[0]["stages"][0], "layers": [1, 32]}]}, *replicas[1:]]
    draft.write_text(yaml.safe_dump({"replicas": broken}))
    with pytest.raises(PlanError, match=r"replicas\[0\] .*stages\[0\]\.layers: expected a range starting at layer 0"):
        planner.evaluate(draft, cluster)


def test_simulate_poisson_and_trace(tiny) -> None:
    plan, cluster = tiny
    run = planner.simulate(plan, cluster, rate=10.0, duration=40.0, seed=3)
    assert run == planner.simulate(plan, cluster, rate=10.0, duration=40.0, seed=3)  # deterministic
    assert run.slo_attainment == 1.0 and 7.0 < run.offered_rps < 13.0
    trace = EXAMPLES / "traces" / "AzureLLMInferenceTrace_conv.csv"
    replayed = planner.simulate(plan, cluster, trace=trace, duration=20.0, speedup=2.0)
    assert replayed.arrived > 0 and replayed.finished + replayed.dropped == replayed.arrived
    with pytest.raises(InputError, match="no request of the trace arrives"):
        planner.simulate(plan, cluster, trace=trace, duration=0.0)


def test_simulated_requests_follow_the_routers_weights(tiny) -> None:
    """The simulator's front end is the launcher router's policy: below saturation each (prefill, decode)
    pair gets its planned share of the requests within one request per route (smooth weighted round robin)."""
    plan, cluster = tiny
    arrivals = poisson(cluster.workload, 0.5 * plan.summary.throughput_rps, 60.0, np.random.default_rng(0))
    sim = Simulation(plan, cluster, arrivals, slo=cluster.slo, warmup=0.0, duration=60.0, drain=60.0)
    sim.run()
    assert all(r.decode >= 0 for r in sim.requests), "a disaggregated plan: every request gets a decode replica"
    pairs = Counter((sim.fronts[r.front].id, sim.decodes[r.decode].id) for r in sim.requests)
    n = len(sim.requests)
    for pair, share in sim.router.weights().items():
        assert abs(pairs[pair] - share * n) < 2.0, (pair, pairs[pair], share * n)
