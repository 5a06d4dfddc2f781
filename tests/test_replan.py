"""Stable re-planning (issue 5 item 4): after a node disappears, `hexplan solve --baseline old.yaml`
keeps the running replicas that did not touch it, unless throughput demands otherwise.

"Moved" GPUs (plan.solver.moved_gpus) are GPUs of the old plan, still in the cluster, whose replica
or role changed. The surviving GPUs of replicas that touched the removed node must move; any other
move has to buy more throughput than --max-loss (5 % by default) allows giving up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES

from planner.inputs.cluster import load_cluster
from planner.plans.schema import Plan, read_plan, write_plan
from planner.yamlio import dump_yaml, load_yaml

MAX_LOSS = 0.05  # hexplan solve's default --max-loss


def without_node(cluster_file: Path, node: str, directory: Path) -> Path:
    """A copy of the cluster file with `node` and its network links removed."""
    spec = load_yaml(cluster_file)
    spec["nodes"] = [n for n in spec["nodes"] if n["name"] != node]
    network = spec.get("network", {})
    network["links"] = [link for link in network.get("links", []) if node not in link["between"]]
    path = directory / f"{cluster_file.stem}-without-{node}.yaml"
    path.write_text(dump_yaml(spec), encoding="utf-8")
    return path


def split_replicas(plan: Plan, node: str) -> tuple[dict[str, tuple], int]:
    """(replicas not touching `node`: id → (GPUs, role)), and the GPUs left over from replicas that did."""

    def on_node(gpu: str) -> bool:
        return gpu.split("/")[0] == node

    kept = {r.id: (sorted(r.gpus), r.role) for r in plan.replicas if not any(on_node(g) for g in r.gpus)}
    stranded = sum(1 for r in plan.replicas if r.id not in kept for g in r.gpus if not on_node(g))
    return kept, stranded


def self_contained_node(plan: Plan) -> str:
    """A node whose replicas lie entirely on it, so removing it strands no GPU of another node."""
    nodes = sorted({g.split("/")[0] for r in plan.replicas for g in r.gpus})
    for node in nodes:
        touching = [r for r in plan.replicas if node in {g.split("/")[0] for g in r.gpus}]
        left_roles = {r.role for r in plan.replicas if r not in touching}
        if all({g.split("/")[0] for g in r.gpus} == {node} for r in touching) and left_roles >= {"prefill", "decode"}:
            return node  # removing it strands nobody and leaves a servable plan
    raise AssertionError("every node shares a replica with another node")


def replan(run_cli, old: Path, cluster: Path, tmp_path: Path, *options: object) -> Plan:
    output = tmp_path / f"replan{len(list(tmp_path.glob('replan*')))}.yaml"
    # HexGen-2's roles: the moved-GPU arithmetic below is about prefill/decode replicas
    args = ("--baseline", old, "--time-limit", "5", "--roles", "disaggregated", "-q", "-o", output, *options)
    result = run_cli("solve", cluster, *args)
    assert result.exit_code == 0, result.output
    return read_plan(output)


@pytest.fixture(scope="module")
def hetero2_old(solved_plan) -> Path:
    return solved_plan(EXAMPLES / "paper-hetero-2.yaml", "--time-limit", "10", "--roles", "disaggregated")


def test_max_moved_zero_keeps_every_surviving_replica(hetero2_old, run_cli, tmp_path, catalog, check_plan):
    old = read_plan(hetero2_old)
    node = self_contained_node(old)
    cluster = without_node(EXAMPLES / "paper-hetero-2.yaml", node, tmp_path)
    plan = replan(run_cli, hetero2_old, cluster, tmp_path, "--max-moved-gpus", "0")
    kept, _ = split_replicas(old, node)
    assert kept, "the example should leave some replicas running"
    new = {r.id: (sorted(r.gpus), r.role) for r in plan.replicas}
    assert {i: new.get(i) for i in kept} == kept  # same ids, GPUs and roles
    assert plan.solver.moved_gpus == 0
    assert plan.solver.baseline == str(hetero2_old)
    check_plan(plan, load_cluster(cluster, catalog), rel=1e-5, idle_ok=True)


def test_default_replan_moves_only_what_throughput_demands(hetero2_old, run_cli, tmp_path, catalog, check_plan):
    old = read_plan(hetero2_old)
    node = self_contained_node(old)
    cluster = without_node(EXAMPLES / "paper-hetero-2.yaml", node, tmp_path)
    plan = replan(run_cli, hetero2_old, cluster, tmp_path)
    check_plan(plan, load_cluster(cluster, catalog), rel=1e-5, idle_ok=True)
    kept, stranded = split_replicas(old, node)
    new = {r.id: (sorted(r.gpus), r.role) for r in plan.replicas}
    stable = all(new.get(i) == v for i, v in kept.items())
    if plan.solver.moved_gpus > stranded or not stable:
        staying = replan(run_cli, hetero2_old, cluster, tmp_path, "--max-moved-gpus", stranded)
        assert plan.summary.throughput_rps * (1 - MAX_LOSS) > staying.summary.throughput_rps, (
            f"{plan.solver.moved_gpus} GPUs moved (only {stranded} had to) for "
            f"{plan.summary.throughput_rps:.3f} req/s; staying put gives {staying.summary.throughput_rps:.3f}"
        )


# --- known gaps, with fixed hand-made baselines so that they do not depend on what the solver currently picks ------


def test_max_moved_zero_keeps_an_idle_surviving_replica(
    tiny_cluster, hand_replica, hand_plan, run_cli, tmp_path, catalog
):
    """tiny.yaml: 2 prefill + 2 decode replicas on the A100s, 4 prefill on the L40s. Without the L40 node the plan is
    prefill-bound and one A100 decode replica gets no requests; with --max-moved-gpus 0 it must still be kept (its
    engine keeps running) and nothing counts as moved."""
    old = hand_plan(
        tiny_cluster,
        *(hand_replica(tiny_cluster, "decode", [f"a100-0/{i}"]) for i in (2, 3)),
        *(hand_replica(tiny_cluster, "prefill", [f"a100-0/{i}"]) for i in (0, 1)),
        *(hand_replica(tiny_cluster, "prefill", [f"l40-0/{i}"]) for i in range(4)),
    )
    write_plan(old, tmp_path / "old.yaml")
    cluster = without_node(EXAMPLES / "tiny.yaml", "l40-0", tmp_path)
    plan = replan(run_cli, tmp_path / "old.yaml", cluster, tmp_path, "--max-moved-gpus", "0")
    kept, _ = split_replicas(old, "l40-0")
    assert {r.id: (sorted(r.gpus), r.role) for r in plan.replicas} == kept
    assert plan.solver.moved_gpus == 0


def test_replan_after_losing_half_of_a_pipeline(hand_replica, hand_plan, run_cli, tmp_path, catalog):
    """paper-hetero-2.yaml: prefill pipelined over the A100 and L40 nodes (8 stages), decode on each A6000 node.
    Without the L40 node, the 4 A100 GPUs must move (their replica is gone), so the 0-moves step of the re-plan is
    infeasible; the re-plan must go on to larger budgets rather than give up."""
    cluster = load_cluster(EXAMPLES / "paper-hetero-2.yaml", catalog)
    old = hand_plan(
        cluster,
        hand_replica(cluster, "prefill", *([f"{n}/{i}"] for n in ("a100-0", "l40-0") for i in range(4))),
        *(hand_replica(cluster, "decode", [f"{n}/{i}" for i in range(4)]) for n in ("a6000-0", "a6000-1")),
    )
    write_plan(old, tmp_path / "old.yaml")
    # --max-loss 100: stay with the fewest moves whatever the throughput (the measured PCIe all-reduce makes
    # moving the A6000 decode replicas worth more than the default 5 %; what is tested is not giving up at 0)
    plan = replan(
        run_cli, tmp_path / "old.yaml", without_node(EXAMPLES / "paper-hetero-2.yaml", "l40-0", tmp_path), tmp_path,
        "--max-loss", "100",
    )  # fmt: skip
    _, stranded = split_replicas(old, "l40-0")
    assert plan.solver.moved_gpus <= stranded  # = 4: the two A6000 decode replicas can stay as they are


def test_a_replica_kept_with_another_layout_counts_as_moved(
    tiny_cluster, hand_replica, hand_plan, run_cli, tmp_path, catalog
):
    """Same GPUs, same role, another layout: vLLM takes TP, PP and the layer split at start-up, so the engine
    restarts and its GPUs move — for `solve --max-moved-gpus` as for `hexplan diff` (scheduler.stability).
    The running prefill replica is a PP=2 pipeline over two A100s with 5|27 layers, a split the scheduler
    never picks for two equal GPUs; everything else is as the scheduler would keep it. With no GPU allowed
    to move, the search keeps that layout (a layout variant, issue 13); with two, it re-splits them."""
    from planner.plans.diff import diff_plans

    old = hand_plan(
        tiny_cluster,
        hand_replica(tiny_cluster, "prefill", ["a100-0/0"], ["a100-0/1"], split=(5,)),
        *(hand_replica(tiny_cluster, "decode", [f"a100-0/{i}"]) for i in (2, 3)),
        *(hand_replica(tiny_cluster, "prefill", [f"l40-0/{i}"]) for i in range(4)),
    )
    write_plan(old, tmp_path / "old.yaml")
    kept = replan(run_cli, tmp_path / "old.yaml", EXAMPLES / "tiny.yaml", tmp_path, "--max-moved-gpus", "0")
    assert kept.solver.moved_gpus == 0 and not diff_plans(old, kept, {g.id for g in tiny_cluster.gpus}).moved
    pipeline = [r for r in kept.replicas if "a100-0/0" in r.gpus]
    assert [tuple(s.layers) for s in pipeline[0].stages] == [(0, 5), (5, 32)]
    plan = replan(run_cli, tmp_path / "old.yaml", EXAMPLES / "tiny.yaml", tmp_path, "--max-moved-gpus", "2")
    moved = diff_plans(old, plan, {g.id for g in tiny_cluster.gpus}).moved
    assert plan.solver.moved_gpus == len(moved) >= 2
    assert {"a100-0/0", "a100-0/1"} <= {m.gpu for m in moved}
