"""Semantic plan diff, CI gates and `hexplan diff` (planner/plans/diff.py, plans/gates.py, cli/diff.py).

Plans are built by hand from examples/tiny.yaml (llama-3.1-8b, 32 layers; a100-0/0-3, l40-0/0-3)
with assess/assemble, so every kind of change can be produced on purpose.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.plans.diff import METRICS, MetricDelta, PlanDiff, diff_plans, match_replicas
from planner.plans.gates import Gates, check_gates, exceeds
from planner.plans.schema import Plan, read_plan, write_plan
from planner.scheduler.assess import Assessment


@pytest.fixture(scope="module")
def base_parts(tiny_cluster: Cluster, hand_replica) -> dict[str, Assessment]:
    c, replica = tiny_cluster, hand_replica
    return {
        "p0": replica(c, "prefill", ("a100-0/0",)),
        "p1": replica(c, "prefill", ("a100-0/1",)),
        "dl0": replica(c, "decode", ("l40-0/0",)),
        "dl1": replica(c, "decode", ("l40-0/1",)),
        "d23": replica(c, "decode", ("a100-0/2", "a100-0/3")),
    }


@pytest.fixture(scope="module")
def base(tiny_cluster: Cluster, base_parts: dict[str, Assessment], hand_plan) -> Plan:
    return hand_plan(tiny_cluster, *base_parts.values())


@pytest.fixture(scope="module")
def variant(tiny_cluster: Cluster, base_parts: dict[str, Assessment], hand_plan):
    """The base plan without the replicas named in `drop`, plus `extra`."""

    def build(drop: tuple[str, ...] = (), *extra: Assessment) -> Plan:
        return hand_plan(tiny_cluster, *(a for k, a in base_parts.items() if k not in drop), *extra)

    return build


def fields(plan_diff: PlanDiff) -> dict[str, set[str]]:
    return {r.label: {c.field for c in r.changes} for r in plan_diff.replica_changes if r.kind == "changed"}


# ---- the diff


def test_identity_diff_is_empty(base: Plan, tmp_path: Path) -> None:
    assert diff_plans(base, base).empty
    write_plan(base, tmp_path / "plan.yaml")
    reread = read_plan(tmp_path / "plan.yaml")  # 6-digit rounding must not read as a change
    assert diff_plans(base, reread).empty and diff_plans(reread, base).empty
    shuffled = base.model_copy(update={"replicas": base.replicas[::-1], "routes": base.routes[::-1]})
    assert diff_plans(base, shuffled).empty
    assert all(m.delta == 0 and m.pct == 0 for m in diff_plans(base, base).metrics)


def test_added_and_removed_replicas(tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica) -> None:
    extra = hand_replica(tiny_cluster, "decode", ("l40-0/2",))
    added = diff_plans(base, variant((), extra))
    assert [(r.kind, r.label) for r in added.replica_changes] == [("added", extra.id)]
    assert added.added_gpus == ("l40-0/2",) and not added.moved and not added.gone_gpus
    assert added.metric("gpus_used").delta == 1 and added.metric("cost_per_hour_usd").delta > 0

    removed = diff_plans(base, variant(("dl1",)), tiny_cluster.gpu_by_id)
    assert [(r.kind, r.label) for r in removed.replica_changes] == [("removed", base_parts["dl1"].id)]
    # Still in the cluster but idle: its engine stops, so it counts as moved.
    assert [(m.gpu, m.new_replica, m.new_role) for m in removed.moved] == [("l40-0/1", None, None)]
    assert not removed.gone_gpus and not removed.added_gpus
    gone = diff_plans(base, variant(("dl1",)), set(tiny_cluster.gpu_by_id) - {"l40-0/1"})
    assert gone.gone_gpus == ("l40-0/1",) and not gone.moved


def test_role_flip_moves_the_gpus_and_keeps_the_match(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    flipped = hand_replica(tiny_cluster, "prefill", ("l40-0/0",))
    d = diff_plans(base, variant(("dl0",), flipped))
    label = f"{base_parts['dl0'].id} → {flipped.id}"
    assert {"id", "role"} <= fields(d)[label] and "gpus" not in fields(d)[label]
    change = next(c for c in d.replica_changes[0].changes if c.field == "role")
    assert (change.old, change.new) == ("decode", "prefill")
    assert [(m.gpu, m.old_role, m.new_role) for m in d.moved] == [("l40-0/0", "decode", "prefill")]


def test_tp_pp_and_layer_split_changes(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    # Same GPU set, TP=2 → PP=2: matched exactly, shape reported, and both GPUs move: vLLM takes TP and
    # PP at start-up, so the engine restarts (scheduler.stability; `solve --max-moved-gpus` counts it too).
    as_pp = hand_replica(tiny_cluster, "prefill", ("a100-0/2",), ("a100-0/3",))
    old = variant(("d23",), hand_replica(tiny_cluster, "prefill", ("a100-0/2", "a100-0/3")))
    d = diff_plans(old, variant(("d23",), as_pp))
    assert fields(d)[as_pp.id] >= {"tp", "pp", "layers", "gpu_types"}
    assert [(m.gpu, m.old_role, m.new_role) for m in d.moved] == [
        ("a100-0/2", "prefill", "prefill"),
        ("a100-0/3", "prefill", "prefill"),
    ]
    tp = next(c for c in d.replica_changes[0].changes if c.field == "tp")
    assert (tp.old, tp.new) == (2, 1)

    uneven = hand_replica(tiny_cluster, "prefill", ("a100-0/2",), ("a100-0/3",), split=(20,))
    d = diff_plans(variant(("d23",), as_pp), variant(("d23",), uneven))
    layers = next(c for c in d.replica_changes[0].changes if c.field == "layers")
    assert (layers.old, layers.new) == ([[0, 16], [16, 32]], [[0, 20], [20, 32]])
    assert not {"tp", "pp", "gpus", "role"} & fields(d)[uneven.id]
    assert [m.gpu for m in d.moved] == ["a100-0/2", "a100-0/3"]  # a new layer split restarts the engine too


def test_gpu_moving_between_replicas_is_matched_by_overlap(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    # a100-0/3 leaves the TP=2 decode replica for a TP=2 prefill replica with a100-0/0.
    new_d = hand_replica(tiny_cluster, "decode", ("a100-0/2",))
    new_p = hand_replica(tiny_cluster, "prefill", ("a100-0/0", "a100-0/3"))
    d = diff_plans(base, variant(("d23", "p0"), new_d, new_p))
    assert set(fields(d)) == {f"{base_parts['d23'].id} → {new_d.id}", f"{base_parts['p0'].id} → {new_p.id}"}
    # Both replicas restart with new GPU sets: each of their GPUs moves (as `solve --max-moved-gpus` counts).
    assert [(m.gpu, m.old_replica, m.new_replica) for m in d.moved] == [
        ("a100-0/0", base_parts["p0"].id, new_p.id),
        ("a100-0/2", base_parts["d23"].id, new_d.id),
        ("a100-0/3", base_parts["d23"].id, new_p.id),
    ]
    assert not d.added_gpus and not d.gone_gpus


def test_matching_prefers_exact_sets_then_largest_overlap(base: Plan) -> None:
    r = base.replicas[0]
    old = [r.model_copy(update={"gpus": g}) for g in (["a", "b", "c"], ["d"], ["e", "f"])]
    new = [r.model_copy(update={"gpus": g}) for g in (["d"], ["a", "b"], ["c", "e"], ["x"])]
    assert match_replicas(old, new) == [(0, 1), (1, 0), (2, 2)]


def test_route_shifts_report_rates_and_per_prefill_weights(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    new = variant(("d23",))  # the big decode replica goes: flows move to the L40s
    d = diff_plans(base, new)
    assert d.routes and all(r.old is not None or r.new is not None for r in d.routes)
    for prefill in {r.source for r in new.routes}:
        assert math.isclose(sum(r.new_weight for r in d.routes if r.source == prefill and r.new), 1.0)
    gone = [r for r in d.routes if r.new is None]
    assert {r.target for r in gone} == {base_parts["d23"].id} and all(r.new_weight == 0 for r in gone)


def test_every_metric_has_absolute_and_percent_delta(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    new = variant(("dl1",))
    d = diff_plans(base, new)
    assert [m.metric.name for m in d.metrics] == [m.name for m in METRICS]
    for m in d.metrics:
        old, now = getattr(base.summary, m.metric.name), getattr(new.summary, m.metric.name)
        assert (m.old, m.new, m.delta) == (old, now, now - old)
        assert m.pct == pytest.approx((now - old) / old * 100)


# ---- gates


def synthetic(throughput: tuple[float, float], cost: tuple[float, float]) -> PlanDiff:
    values = {"throughput_rps": throughput, "cost_per_hour_usd": cost}
    metrics = tuple(MetricDelta(m, *values.get(m.name, (1.0, 1.0))) for m in METRICS)
    return PlanDiff(metrics, ("decode", "decode"), (), (), (), (), ())


@pytest.mark.parametrize(
    ("limit", "passed"), [(10.0, True), (10.000001, True), (9.99, False), (0.0, False), (50.0, True)]
)
def test_regression_gate_fires_strictly_beyond_its_limit(limit: float, passed: bool) -> None:
    (gate,) = check_gates(synthetic((10.0, 9.0), (1.0, 1.0)), Gates(max_regression_pct=limit))
    assert (gate.name, gate.value, gate.passed) == ("throughput regression", 10.0, passed)


@pytest.mark.parametrize(("limit", "passed"), [(20.0, True), (19.9, False), (0.0, False)])
def test_cost_gate_fires_strictly_beyond_its_limit(limit: float, passed: bool) -> None:
    (gate,) = check_gates(synthetic((1.0, 1.0), (10.0, 12.0)), Gates(max_cost_increase_pct=limit))
    assert gate.value == pytest.approx(20.0) and gate.passed is passed


def test_gates_on_improvements_and_undefined_percentages() -> None:
    better = check_gates(synthetic((9.0, 10.0), (12.0, 10.0)), Gates(0.0, None, 0.0))
    assert all(g.passed and g.value == 0 for g in better)
    from_zero = check_gates(synthetic((0.0, 1.0), (0.0, 1.0)), Gates(0.0, None, 1e9))
    assert [g.passed for g in from_zero] == [True, False]  # cost from $0: an unbounded increase
    assert exceeds(10.000000000000002, 10.0) is False and exceeds(10.0001, 10.0) is True


def test_moved_gpus_gate_at_its_limit(
    tiny_cluster: Cluster, base_parts: dict, base: Plan, variant, hand_replica
) -> None:
    flipped = [hand_replica(tiny_cluster, "prefill", (g,)) for g in ("l40-0/0", "l40-0/1")]
    d = diff_plans(base, variant(("dl0", "dl1"), *flipped))
    assert len(d.moved) == 2
    assert [g.passed for g in check_gates(d, Gates(max_moved_gpus=2))] == [True]
    assert [g.passed for g in check_gates(d, Gates(max_moved_gpus=1))] == [False]


# ---- hexplan diff


@pytest.fixture
def plans(base: Plan, variant, tmp_path: Path) -> dict[str, Path]:
    smaller = variant(("dl1", "p1"))
    paths = {"base": tmp_path / "base.yaml", "smaller": tmp_path / "smaller.yaml"}
    write_plan(base, paths["base"])
    write_plan(smaller, paths["smaller"])
    return paths


def test_cli_identity_exits_0(run_cli, plans: dict[str, Path]) -> None:
    result = run_cli("diff", plans["base"], plans["base"], "--fail-on-regression", 0, "--max-moved-gpus", 0)
    assert result.exit_code == 0, result.output
    assert "no differences" in result.stdout and "PASS throughput regression" in result.stdout


def test_cli_gate_exit_codes_at_the_threshold(run_cli, plans: dict[str, Path], base: Plan) -> None:
    smaller = read_plan(plans["smaller"])
    drop = (1 - smaller.summary.throughput_rps / base.summary.throughput_rps) * 100
    at = run_cli("diff", plans["base"], plans["smaller"], "--fail-on-regression", repr(drop))
    assert at.exit_code == 0, at.output
    beyond = run_cli("diff", plans["base"], plans["smaller"], "--fail-on-regression", repr(drop * 0.999))
    assert beyond.exit_code == 1
    assert "gate failed: FAIL throughput regression: throughput" in beyond.stderr
    cost = run_cli("diff", plans["smaller"], plans["base"], "--fail-on-cost-increase", "1")
    assert cost.exit_code == 1 and "cost increase" in cost.stderr


def test_cli_bad_input_exits_2(run_cli, plans: dict[str, Path], tmp_path: Path) -> None:
    missing = run_cli("diff", plans["base"], tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "nope.yaml: no such file" in missing.stderr
    both = run_cli("diff", plans["base"], plans["base"], "--cluster", "x.yaml", "--old-cluster", "y.yaml")
    assert both.exit_code == 2 and "do not combine it with --old-cluster" in both.stderr
    negative = run_cli("diff", plans["base"], plans["base"], "--fail-on-regression", "-1")
    assert negative.exit_code == 2


def test_cli_old_plan_invalid_on_new_cluster_is_bad_input(run_cli, plans: dict[str, Path], write_yaml) -> None:
    text = (Path(__file__).parent.parent / "examples" / "tiny.yaml").read_text()
    no_l40 = write_yaml("\n".join(line for line in text.splitlines() if "name: l40-0" not in line), "no-l40.yaml")
    result = run_cli("diff", plans["base"], plans["base"], "--cluster", no_l40)
    assert result.exit_code == 2
    assert f"{plans['base']} cannot run on {no_l40}:" in result.stderr and "l40-0/0" in result.stderr
    # Each plan on its own cluster: the old on the one it records, the new on the smaller one.
    assert run_cli("diff", plans["base"], plans["base"], "--new-cluster", no_l40).exit_code == 2


def test_cli_json_is_stable_and_complete(run_cli, plans: dict[str, Path]) -> None:
    args = ("diff", plans["base"], plans["smaller"], "--format", "json", "--max-moved-gpus", "1")
    first, second = run_cli(*args), run_cli(*args)
    assert first.exit_code == 1 and first.stdout == second.stdout
    body = json.loads(first.stdout)
    assert set(body) == {"empty", "passed", "gates", "metrics", "replicas", "gpus", "routes", "notes", "old", "new"}
    assert set(body["metrics"]) == {m.name for m in METRICS} | {"bottleneck"}
    assert set(body["metrics"]["throughput_rps"]) == {"old", "new", "delta", "pct"}
    assert set(body["replicas"]) == {"added", "removed", "changed", "unchanged"}
    assert sorted(r["gpus"][0] for r in body["replicas"]["removed"]) == ["a100-0/1", "l40-0/1"]
    assert [m["gpu"] for m in body["gpus"]["moved"] if m["to"] is None] == ["a100-0/1", "l40-0/1"]
    assert body["gpus"]["gone"] == [] and body["passed"] is False
    assert body["old"]["cluster"]["sha256"] == body["old"]["cluster"]["recorded_sha256"]


def test_cli_markdown_shape(run_cli, plans: dict[str, Path], tiny_cluster: Cluster, base_parts: dict) -> None:
    result = run_cli("diff", plans["base"], plans["smaller"], "-f", "markdown", "--fail-on-regression", "1")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### hexplan diff FAILED: ")
    assert lines[2].startswith("- **FAIL throughput regression: throughput ")
    assert "| metric | old | new | Δ | Δ% | |" in lines and "| change | replica | role | GPUs | details |" in lines
    assert any(line.startswith("| removed | `") for line in lines)
    assert any(line.startswith("- moved GPUs (2): a100-0/1 (p-a100-0-") and "→ idle)" in line for line in lines)


def test_cli_replan_evaluates_each_plan_on_its_own_cluster(
    run_cli, plans: dict[str, Path], write_yaml, catalog, hand_replica, hand_plan, base_parts: dict
) -> None:
    text = (Path(__file__).parent.parent / "examples" / "tiny.yaml").read_text()
    no_l40 = load_cluster(
        write_yaml("\n".join(line for line in text.splitlines() if "name: l40-0" not in line), "no-l40.yaml"), catalog
    )
    kept = [a for k, a in base_parts.items() if not k.startswith("dl")]
    new = hand_plan(no_l40, *(hand_replica(no_l40, a.role, *(s.gpus for s in a.layout.stages)) for a in kept))
    write_plan(new, plans["base"].with_name("new.yaml"))
    result = run_cli("diff", plans["base"], plans["base"].with_name("new.yaml"), "-f", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["new"]["cluster"]["file"] == no_l40.source.as_posix() and body["notes"] == []
    assert body["gpus"] == {"moved": [], "added": [], "gone": ["l40-0/0", "l40-0/1"]}
    assert body["replicas"]["changed"] == [] and body["replicas"]["unchanged"] == 3
