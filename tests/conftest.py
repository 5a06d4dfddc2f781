"""Shared fixtures for the whole test suite.

Other helpers may ADD fixtures here; never change the behaviour of an existing one.

- `ROOT`, `EXAMPLES`: absolute paths, so tests do not depend on the working directory.
- `catalog`: the shipped catalogue (profiles/*.yaml), loaded once per session.
- `tiny_cluster`: examples/tiny.yaml resolved (llama-3.1-8b on 4×A100-80G + 4×L40).
- `run_cli(*args)`: runs the real `hexplan` entry point (`planner.cli:main`, including its
  error handling) in-process and returns a `CliResult(exit_code, stdout, stderr)`.
- `write_yaml(text, name=...)`: writes a file under tmp_path and returns its path.
- `hand_replica(cluster, role, *stages, split=())`, `hand_plan(cluster, *replicas)`: build a plan by hand
  (stages are TP groups of GPU ids in pipeline order; layers split evenly unless `split` gives the boundaries).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli import main
from planner.costs.layout import Layout, Stage
from planner.inputs.catalog import Catalog, load_catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.plans.assemble import assemble
from planner.plans.schema import Plan, SolverInfo
from planner.scheduler.assess import Assessment, assess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Cluster files among the examples: everything but the offers files `hexplan provision` reads.
CLUSTER_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("offers-"))


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _run_cli(*args: object) -> CliResult:
    """Call `planner.cli.main` as the `hexplan` script would, capturing both streams.

    In-process (no interpreter start-up per call) but through the real `main`, so a
    PlannerError is rendered and turned into exit status 2 exactly as for users. A wide
    COLUMNS keeps rich tables from wrapping cells. Bugs propagate with their traceback.
    """
    runner = CliRunner(env={"COLUMNS": "240", "NO_COLOR": "1"})
    argv = sys.argv
    with runner.isolation() as (out, err, _):
        sys.argv = ["hexplan", *(str(a) for a in args)]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
            sys.stdout.flush()  # plain print() output sits in the text wrapper's buffer until flushed
            sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return CliResult(code, stdout, stderr)


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    return _run_cli


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def tiny_cluster(catalog: Catalog) -> Cluster:
    return load_cluster(EXAMPLES / "tiny.yaml", catalog)


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "cluster.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def _hand_replica(cluster: Cluster, role: str, *stages: Sequence[str], split: Sequence[int] = ()) -> Assessment:
    layers = cluster.model.layers
    bounds = [0, *(split or [layers * (i + 1) // len(stages) for i in range(len(stages) - 1)]), layers]
    layout = Layout(tuple(Stage(tuple(g), bounds[i], bounds[i + 1]) for i, g in enumerate(stages)))
    found = assess(cluster, role, layout)  # type: ignore[arg-type]
    assert found is not None, f"{role} on {stages} does not fit"
    return found


def _hand_plan(cluster: Cluster, *replicas: Assessment) -> Plan:
    return assemble(cluster, replicas, SolverInfo(version="0.1.0"))


@pytest.fixture(scope="session")
def hand_replica() -> Callable[..., Assessment]:
    return _hand_replica


@pytest.fixture(scope="session")
def hand_plan() -> Callable[..., Plan]:
    return _hand_plan


# --- launcher (helper "launch"): one fake multi-node Ray cluster per test session -------------------------------
RAY_TEST_NODES = {"a100-0": "A100-80G", "a100-1": "A100-80G", "l40-0": "L40"}  # plan node name → GPU type, 2 GPUs each


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """Address of a local `ray.cluster_utils.Cluster`: 3 nodes with 2 fake GPUs each, labelled as the launcher expects.

    Shared by every @pytest.mark.ray test (starting Ray costs ~20 s and ~700 MiB here). The head is one of the three
    labelled nodes, so nothing else runs. RAY_AUTH_MODE=disabled is set for the session (and inherited by the
    `hexlaunch` subprocesses the tests run). The test process itself does not connect.
    """
    import os

    previous = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from ray.cluster_utils import Cluster

    nodes = iter(RAY_TEST_NODES.items())
    name, gpu = next(nodes)
    labels = {"hexgen2.io/node": name, "hexgen2.io/gpu": gpu}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 2, "labels": labels, "include_dashboard": False},
    )
    for name, gpu in nodes:
        cluster.add_node(num_cpus=1, num_gpus=2, labels={"hexgen2.io/node": name, "hexgen2.io/gpu": gpu})
    yield cluster.address
    cluster.shutdown()
    if previous is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = previous


# --- solver tests (helper "solver-tests"): the invariants every plan the scheduler writes must satisfy ------------
def _check_plan(plan: Plan, cluster: Cluster, *, rel: float = 1e-6, idle_ok: bool = False) -> Plan:
    """Assert the launchability, memory and flow invariants of issue 3 on `plan`; return evaluate(plan).

    `rel` is the relative tolerance on rates: 1e-6 for a plan from `solve()`, ~1e-5 for one read back from a
    file (plan files round floats to 6 significant digits). `idle_ok` allows replicas that carry no requests
    (the scheduler drops them, but a re-plan may keep a running one).
    """
    from collections import Counter

    from planner.costs.memory import kv_capacity_tokens
    from planner.plans.assemble import layout_of
    from planner.plans.checks import evaluate

    def close(a: float, b: float) -> bool:
        return a == pytest.approx(b, rel=rel, abs=1e-9)

    launchable = plan.solver.connector != "none"
    twice = [g for g, n in Counter(g for r in plan.replicas for g in r.gpus).items() if n > 1]
    assert not twice, f"GPUs used by more than one replica: {twice}"
    for r in plan.replicas:
        assert all(g in cluster.gpu_by_id for g in r.gpus), f"{r.id}: GPUs not in the cluster"
        assert sorted(r.gpus) == sorted(g for s in r.stages for g in s.gpus), f"{r.id}: gpus ≠ stage GPUs"
        assert r.pp == len(r.stages) and all(len(s.gpus) == r.tp for s in r.stages), f"{r.id}: TP×PP ≠ stages"
        for stage, gpu_type in zip(r.stages, r.gpu_types, strict=True):
            slots = [cluster.gpu_by_id[g] for g in stage.gpus]
            assert len({s.node for s in slots}) == 1, f"{r.id}: a stage spans nodes {stage.gpus}"
            assert {s.gpu.key for s in slots} == {gpu_type}, f"{r.id}: stage GPU types ≠ {gpu_type}"
        tokens = kv_capacity_tokens(cluster, layout_of(r), r.engine.max_num_batched_tokens)
        assert tokens > 0, f"{r.id}: weights and activations do not fit ({tokens:.0f} KV tokens)"
        if launchable and r.role == "decode":
            assert r.pp == 1, f"{r.id}: decode PP={r.pp} under connector {plan.solver.connector}"
    replicas = {r.id: r for r in plan.replicas}
    out: Counter[str] = Counter()
    into: Counter[str] = Counter()
    for route in plan.routes:
        p, d = replicas[route.source], replicas[route.target]
        assert (p.role, d.role) == ("prefill", "decode"), f"route {p.id} → {d.id} is not prefill → decode"
        if launchable:
            assert p.tp % d.tp == 0 or d.tp % p.tp == 0, f"route {p.id} → {d.id}: TP {p.tp} and {d.tp} do not divide"
        assert route.rate_rps <= route.capacity_rps * (1 + rel), f"route {p.id} → {d.id} over its link capacity"
        out[p.id] += route.rate_rps
        into[d.id] += route.rate_rps
    for r in plan.replicas:  # flow conservation: what a replica sends or receives is at most what it can serve
        if r.role == "colocated":  # serves requests directly: no route shows its flow
            continue
        flow = out[r.id] if r.role == "prefill" else into[r.id]
        assert idle_ok or flow > 0, f"{r.id} deployed but carries no requests"
        assert flow <= r.capacity_rps * (1 + rel), f"{r.id}: {flow} req/s through a {r.capacity_rps} req/s replica"
    # The routes carry the goodput flow when the plan has an SLO (what the router follows), else the throughput;
    # colocated replicas carry the rest, at most their own rate.
    routed = plan.summary.goodput_rps if plan.slo is not None else plan.summary.throughput_rps
    assert routed is not None and sum(out.values()) <= routed * (1 + rel) + 1e-9, "routes exceed the plan's rate"
    colocated = sum(
        (r.goodput_rps if plan.slo is not None else r.capacity_rps) or 0.0
        for r in plan.replicas
        if r.role == "colocated"
    )
    if colocated == 0:
        assert close(sum(out.values()), routed), "routes do not add up to the throughput"
    else:
        assert routed <= (sum(out.values()) + colocated) * (1 + rel), "the plan's rate exceeds its replicas'"
    honest = evaluate(plan, cluster)
    assert close(honest.summary.throughput_rps, plan.summary.throughput_rps), "evaluate() disagrees"
    recomputed = {(r.source, r.target): r.rate_rps for r in honest.routes}
    claimed = {(r.source, r.target): r.rate_rps for r in plan.routes}
    assert recomputed.keys() == claimed.keys(), "evaluate() routes differently"
    assert all(close(recomputed[k], claimed[k]) for k in claimed), "evaluate() gives other route rates"
    return honest


@pytest.fixture(scope="session")
def check_plan() -> Callable[..., Plan]:
    return _check_plan


@pytest.fixture(scope="session")
def solved_plan(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`solved_plan(cluster_file, *options)`: path of the plan `hexplan solve cluster_file *options -q` writes.

    Each distinct command runs once per session (solving costs seconds); callers must not modify the file.
    """
    cache: dict[tuple[str, ...], Path] = {}
    directory = tmp_path_factory.mktemp("solved")

    def solved(*args: object) -> Path:
        key = tuple(str(a) for a in args)
        if key not in cache:
            path = directory / f"plan-{len(cache)}.yaml"
            result = _run_cli("solve", *key, "-q", "-o", path)
            assert result.exit_code == 0, result.output
            cache[key] = path
        return cache[key]

    return solved
