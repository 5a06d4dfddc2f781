"""plan.yaml: round trip, byte-identical output, honest `evaluate`, and rejection of plans that cannot run."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import EXAMPLES
from oracles import served_rps

from planner.costs.layout import Layout, Stage
from planner.errors import PlanError
from planner.plans.assemble import assemble
from planner.plans.checks import evaluate
from planner.plans.schema import Plan, SolverInfo, plan_to_yaml, read_plan, write_plan
from planner.scheduler.assess import assess
from planner.types import replica_id

LAYERS = 32  # llama-3.1-8b, the model of examples/tiny.yaml (a100-0: 4×A100-80G, l40-0: 4×L40)


def one_stage(*gpus: str) -> Layout:
    return Layout((Stage(gpus, 0, LAYERS),))


# role, layout: two prefill and two decode replicas on both GPU types
REPLICAS = [
    ("prefill", one_stage("a100-0/0")),
    ("prefill", one_stage("l40-0/0", "l40-0/1")),
    ("decode", one_stage("a100-0/2", "a100-0/3")),
    ("decode", one_stage("l40-0/2")),
]


def build(cluster, replicas=REPLICAS, connector="nixl") -> Plan:
    assessments = [assess(cluster, role, layout) for role, layout in replicas]
    assert all(a is not None for a in assessments)
    return assemble(cluster, assessments, SolverInfo(version="0.1.0", connector=connector))


@pytest.fixture(scope="module")
def plan(tiny_cluster) -> Plan:
    return build(tiny_cluster)


@pytest.fixture
def plan_file(plan, tmp_path):
    path = tmp_path / "plan.yaml"
    write_plan(plan, path)
    return path


def edited(plan_file, edit) -> None:
    """Apply `edit` to the plan file's YAML data in place (a hand edit)."""
    data = yaml.safe_load(plan_file.read_text())
    edit(data)
    plan_file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_plan_is_sensible(plan):
    assert plan.schema_version == 1 and plan.model == "llama-3.1-8b"
    assert {r.role for r in plan.replicas} == {"prefill", "decode"}
    assert plan.summary.throughput_rps > 0 and plan.summary.gpus_used == 6
    assert plan.summary.bottleneck in ("prefill", "decode", "kv_transfer")
    assert plan.slo is not None and 0 < plan.summary.goodput_rps <= plan.summary.throughput_rps
    # with an SLO the routes carry the goodput flow: the operating point the router follows
    assert sum(r.rate_rps for r in plan.routes) == pytest.approx(plan.summary.goodput_rps, rel=1e-6)
    for route in plan.routes:
        assert 0 <= route.rate_rps <= route.capacity_rps * (1 + 1e-6)
    assert plan.replicas[0].id == replica_id("prefill", ["a100-0/0"])


def test_round_trip(plan, plan_file):
    back = read_plan(plan_file)
    assert plan_to_yaml(back) == plan_file.read_text()
    assert [(r.id, r.role, r.gpus, r.stages) for r in sorted(back.replicas, key=lambda r: r.id)] == [
        (r.id, r.role, r.gpus, r.stages) for r in sorted(plan.replicas, key=lambda r: r.id)
    ]
    assert back.summary.throughput_rps == pytest.approx(plan.summary.throughput_rps, rel=1e-5)


def test_output_is_byte_identical(tiny_cluster, plan_file, tmp_path):
    again = tmp_path / "again.yaml"
    write_plan(build(tiny_cluster, list(reversed(REPLICAS))), again)  # other build order, same plan
    assert again.read_bytes() == plan_file.read_bytes()
    text = plan_file.read_text()
    assert text.startswith("cluster:")  # sorted keys
    assert "&" not in text and "*" not in text  # no YAML anchors or aliases


def test_evaluate_reproduces_an_honest_plan(plan, tiny_cluster, plan_file):
    honest = evaluate(read_plan(plan_file), tiny_cluster)
    assert plan_to_yaml(honest) == plan_to_yaml(plan)
    replicas = [assess(tiny_cluster, role, layout) for role, layout in REPLICAS]
    assert honest.summary.throughput_rps == pytest.approx(served_rps(tiny_cluster, replicas), rel=1e-6)  # independent


def test_evaluate_ignores_claimed_figures(plan, tiny_cluster, plan_file):
    def inflate(data):
        data["summary"].update(throughput_rps=999.0, cost_per_hour_usd=0.01, bottleneck="none", ttft_s=0.0)
        for replica in data["replicas"]:
            replica["capacity_rps"] = 1000.0
            replica["latency_s"] = 1e-9
        for route in data["routes"]:
            route.update(rate_rps=500.0, capacity_rps=500.0)

    edited(plan_file, inflate)
    claimed = read_plan(plan_file)
    assert claimed.summary.throughput_rps == 999.0
    honest = evaluate(claimed, tiny_cluster)
    assert honest.summary == plan.summary
    assert sorted((r.id, r.capacity_rps, r.latency_s) for r in honest.replicas) == sorted(
        (r.id, r.capacity_rps, r.latency_s) for r in plan.replicas
    )
    assert honest.routes == plan.routes


def test_cli_evaluate(run_cli, plan, plan_file):
    def inflate(data):
        data["summary"]["throughput_rps"] = 999.0

    edited(plan_file, inflate)
    result = run_cli("evaluate", plan_file, "--cluster", EXAMPLES / "tiny.yaml")
    assert result.exit_code == 0, result.output
    assert "the file claims 999.000 req/s" in result.stdout
    assert f"{plan.summary.throughput_rps:.3f} req/s" in result.stdout

    as_yaml = run_cli("evaluate", plan_file, "--cluster", EXAMPLES / "tiny.yaml", "--yaml")
    assert as_yaml.exit_code == 0 and as_yaml.stdout == plan_to_yaml(plan)

    out = plan_file.parent / "honest.yaml"
    assert run_cli("evaluate", plan_file, "-c", EXAMPLES / "tiny.yaml", "-o", out).exit_code == 0
    assert out.read_text() == plan_to_yaml(plan)


def test_cli_evaluate_uses_recorded_cluster(run_cli, plan_file):
    assert run_cli("evaluate", plan_file).exit_code == 0  # the plan records the absolute path of tiny.yaml


def test_cli_show(run_cli, plan, plan_file):
    result = run_cli("show", plan_file)
    assert result.exit_code == 0, result.output
    assert all(r.id in result.stdout for r in plan.replicas)


# ----------------------------------------------------------------------------- plans that cannot run


def _replica(data, gpu: str) -> dict:
    """The replica holding `gpu` (the file lists replicas sorted by role and id, not in build order)."""
    return next(r for r in data["replicas"] if gpu in r["gpus"])


def _replace_stage(gpu: str, gpus: list[str] | None = None, layers: list[int] | None = None):
    def edit(data):
        replica = _replica(data, gpu)
        if gpus is not None:
            replica["stages"][0]["gpus"] = replica["gpus"] = gpus
            replica["tp"] = len(gpus)
        if layers is not None:
            replica["stages"][0]["layers"] = layers

    return edit


def _decode_pp2(data):
    decode = _replica(data, "a100-0/2")
    a, b = decode["gpus"]
    decode.update(pp=2, tp=1, gpu_types=[*decode["gpu_types"]] * 2)
    decode["stages"] = [{"gpus": [a], "layers": [0, 16]}, {"gpus": [b], "layers": [16, LAYERS]}]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_replace_stage("l40-0/2", gpus=["a100-0/0"]), "plan uses GPU(s) a100-0/0 in more than one replica"),
        (_replace_stage("a100-0/0", gpus=["a100-0/9"]), "GPU(s) a100-0/9 are not in the cluster"),
        (_replace_stage("a100-0/0", gpus=["h100-0/0"]), "GPU(s) h100-0/0 are not in the cluster"),
        (_replace_stage("l40-0/0", layers=[0, 30]), "stages cover layers [0, 30) but the model has 32"),
        (_replace_stage("l40-0/0", layers=[2, 32]), "stages[0].layers: expected a range starting at layer 0"),
        (_replace_stage("a100-0/0", gpus=["a100-0/0", "l40-0/3"]), "a TP group must sit on one node"),
        (_decode_pp2, "a decode replica with PP=2; NIXL KV transfer needs decode PP = 1"),
        (lambda d: d.update(model="llama-2-70b"), "plan is for model llama-2-70b but the cluster file serves"),
        (lambda d: _replica(d, "a100-0/0").update(gpus=["a100-0/1"]), "gpus does not list the same GPUs as its stages"),
    ],
)
def test_evaluate_rejects_plans_that_cannot_run(run_cli, plan_file, edit, message):
    edited(plan_file, edit)
    result = run_cli("evaluate", plan_file, "--cluster", EXAMPLES / "tiny.yaml")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.stderr
    assert str(plan_file) in result.stderr


def test_decode_pp2_is_allowed_without_a_connector(tiny_cluster, plan_file):
    edited(plan_file, lambda d: (_decode_pp2(d), d["solver"].update(connector="none")))
    honest = evaluate(read_plan(plan_file), tiny_cluster)
    assert any(r.pp == 2 for r in honest.replicas)


def test_replica_that_does_not_fit(catalog, write_yaml):
    """llama-2-70b's weights (138 GB) on one A100-80G: evaluate says it does not fit."""
    from planner.inputs.cluster import load_cluster

    path = write_yaml((EXAMPLES / "tiny.yaml").read_text().replace("llama-3.1-8b", "llama-2-70b"))
    cluster = load_cluster(path, catalog)
    assert assess(cluster, "prefill", Layout((Stage(("a100-0/0",), 0, 80),))) is None
    fits = [("prefill", Layout((Stage(tuple(f"a100-0/{i}" for i in range(4)), 0, 80),)))]
    plan = build(cluster, fits)
    data = plan.model_dump(by_alias=True)
    data["replicas"][0].update(gpus=["a100-0/0"], tp=1, stages=[{"gpus": ["a100-0/0"], "layers": (0, 80)}])
    with pytest.raises(PlanError, match=r"replicas\[0\] .*do not fit in these GPUs' memory"):
        evaluate(Plan.model_validate(data), cluster)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema_version=2), "schema_version: Input should be 1"),
        (lambda d: d.update(colour="red"), "colour: Extra inputs are not permitted"),
        (lambda d: d["replicas"][0].update(role="both"), "replicas[0].role: Input should be 'prefill', 'decode'"),
        (lambda d: d["replicas"][0].update(tp=0), "replicas[0].tp: Input should be greater than 0"),
        (lambda d: d.pop("summary"), "summary: Field required"),
    ],
)
def test_malformed_plan_file(run_cli, plan_file, edit, message):
    edited(plan_file, edit)
    for command in ("show", "evaluate"):
        result = run_cli(command, plan_file)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"{plan_file}: {message}" in result.stderr


def test_missing_plan_file(run_cli, tmp_path):
    result = run_cli("show", tmp_path / "none.yaml")
    assert result.exit_code == 2 and "no such file (expected a plan file)" in result.stderr


def test_schema_plan_is_json_schema(run_cli, plan_file):
    jsonschema = pytest.importorskip("jsonschema")
    result = run_cli("schema", "plan")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(plan_file.read_text()), schema)
    assert {"schema_version", "replicas", "routes", "summary"} <= set(schema["properties"])
