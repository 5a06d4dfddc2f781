"""`hexplan provision` end to end: the files it writes, its errors, and its properties with full solves
(seeded fixed instances; brute force over node counts as the oracle for a single GPU type)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from conftest import EXAMPLES

import planner
from planner.errors import InfeasibleError, InputError
from planner.provision.output import write_outputs
from planner.provision.results import plan_goodput

SERVING = """model: llama-3.1-8b
workload: {prompt_tokens: 512, output_tokens: 128, slo: {ttft: 1s, tpot: 50ms}}
network: {default: {bandwidth: 100Gbps, latency: 10us}}
"""
OFFERS = (
    SERVING
    + """offers:
  - {gpu: L40, price: $1.9/h, gpus_per_node: 1, max_gpus: 4}
  - {gpu: A100-80G, price: $2.7/h, gpus_per_node: 2, max_gpus: 4}
"""
)
FAST = {"time_limit": 10.0, "seed": 0, "verify": False}  # the simulator re-ranking costs seconds per solve


@pytest.fixture
def offers_file(write_yaml) -> Path:
    return write_yaml(OFFERS, name="offers.yaml")


def test_writes_a_cluster_and_the_plan_solve_writes_for_it(run_cli, offers_file, tmp_path) -> None:
    out = tmp_path / "out"
    result = run_cli("provision", offers_file, "--budget", "$8/h", "-o", out, "--seed", "3", "--time-limit", "10")
    assert result.exit_code == 0, result.output
    for words in ("mixes for budget $8.00/h", "chosen", "best single type", "goodput req/s", "$/M tokens"):
        assert words in result.stdout
    assert "integer programs" in result.stdout and "plans in" in result.stdout
    assert f"wrote {out / 'cluster.yaml'} and {out / 'plan.yaml'}" in result.stdout.replace("\n", "")
    assert run_cli("validate", out / "cluster.yaml").exit_code == 0
    again = tmp_path / "again.yaml"
    solved = run_cli("solve", out / "cluster.yaml", "--seed", "3", "--time-limit", "10", "-q", "-o", again)
    assert solved.exit_code == 0, solved.output
    assert (out / "plan.yaml").read_bytes() == again.read_bytes()
    plan = planner.read_plan(out / "plan.yaml")
    cluster = planner.load_cluster(out / "cluster.yaml")
    assert cluster.total_price_per_hour <= 8.0
    assert plan.cluster.file == (out / "cluster.yaml").as_posix() and plan.solver.converged


def test_the_documented_example_runs(run_cli, tmp_path) -> None:
    result = run_cli("provision", EXAMPLES / "offers-runpod.yaml", "--budget", "$30/h", "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0, result.output
    assert planner.load_cluster(tmp_path / "out" / "cluster.yaml").total_price_per_hour <= 30.0


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        (
            OFFERS.replace("llama-3.1-8b", "llama-3.1-405b"),
            ("--budget", "$30/h"),
            "llama-3.1-405b (812 GB of weights) fits on no offered combination: no group of up to 4 nodes of one "
            "offer holds it as both a prefill and a decode replica within the SLO.",
        ),
        (
            OFFERS,
            ("--budget", "$1.5/h"),
            "a budget of $1.50/h buys no mix that serves llama-3.1-8b: the cheapest is 1×1 L40 at $1.90/h",
        ),
        (
            OFFERS,
            ("--target-rps", "1000"),
            "no mix within the offers' limits reaches 1000 req/s: the best reachable is 4×1 L40 + 2×2 A100-80G at "
            "$18.40/h, about ",
        ),
        (OFFERS, ("--budget", "30"), "option --budget: cannot read '30' as a price"),
        (OFFERS, ("--budget", "$0/h"), "option --budget: '$0/h' buys nothing"),
        (OFFERS, ("--budget", "$9/h", "--target-rps", "3"), "give exactly one of --budget"),
        (OFFERS, (), "give exactly one of --budget"),
        (OFFERS, ("--target-rps", "-2"), "option --target-rps: expected a positive number of requests/s, got -2.0"),
    ],
)
def test_bad_requests_exit_2_with_the_reason_and_write_nothing(run_cli, write_yaml, tmp_path, text, args, message):
    path = write_yaml(text, name="offers.yaml")
    out = tmp_path / "out"
    result = run_cli("provision", path, *args, "-o", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stderr.lstrip().startswith("error: ")
    assert message in result.stderr.replace("\n", " "), result.stderr
    assert not out.exists()


def test_a_failure_leaves_earlier_outputs_alone(run_cli, offers_file, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cluster.yaml").write_text("old cluster")
    (out / "plan.yaml").write_text("old plan")
    assert run_cli("provision", offers_file, "--budget", "$1/h", "-o", out).exit_code == 2
    assert (out / "cluster.yaml").read_text() == "old cluster" and (out / "plan.yaml").read_text() == "old plan"
    (out / "plan.yaml").unlink()
    (out / "plan.yaml").mkdir()  # not a plain file: refused before anything is written
    result = run_cli("provision", offers_file, "--budget", "$8/h", "-o", out, "-q")
    assert result.exit_code == 2 and "plan.yaml: exists and is not a plain file" in result.stderr
    assert (out / "cluster.yaml").read_text() == "old cluster"
    assert sorted(p.name for p in out.iterdir()) == ["cluster.yaml", "plan.yaml"]


def test_write_outputs_refuses_a_file_as_the_folder(offers_file, tmp_path) -> None:
    chosen = planner.provision_offers(offers_file, tmp_path / "x", budget=8.0, **FAST).chosen
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        write_outputs(chosen, tmp_path / "file")


def test_target_mode_picks_the_cheapest_mix_whose_plan_reaches_the_target(offers_file, tmp_path) -> None:
    result = planner.provision_offers(offers_file, tmp_path, target_rps=30.0, **FAST)
    assert result.chosen.goodput_rps >= 30.0
    planned = [*result.candidates, *([result.single_type] if result.single_type else [])]
    assert all(c.cost_per_hour >= result.chosen.cost_per_hour for c in planned if c.goodput_rps >= 30.0)


def test_budget_mode_keeps_the_best_plan_and_it_beats_every_single_type(offers_file, tmp_path) -> None:
    result = planner.provision_offers(offers_file, tmp_path, budget=9.0, **FAST)
    assert result.chosen.plan is not None and plan_goodput(result.chosen.plan) == result.chosen.goodput_rps
    assert result.single_type is not None
    assert result.chosen.goodput_rps >= result.single_type.goodput_rps * (1 - 1e-3)  # equal within 0.1 %: cheaper
    assert result.chosen.cost_per_hour <= result.single_type.cost_per_hour or (
        result.chosen.goodput_rps > result.single_type.goodput_rps
    )
    assert all(c.goodput_rps <= result.chosen.goodput_rps * (1 + 1e-3) for c in result.candidates)
    assert result.solves >= len(result.candidates) and result.programs > result.solves
    again = planner.provision_offers(offers_file, tmp_path, budget=9.0, **FAST)
    assert again.chosen.text == result.chosen.text and again.chosen.plan == result.chosen.plan  # deterministic


def test_more_budget_never_lowers_the_goodput_found(offers_file, tmp_path) -> None:
    found = [planner.provision_offers(offers_file, tmp_path, budget=b, **FAST).chosen for b in (4, 5.5, 7.5, 9, 12, 19)]
    for less, more in itertools.pairwise(found):
        assert more.goodput_rps >= less.goodput_rps * (1 - 1e-3), (less.label, more.label)
    assert found[-1].goodput_rps > found[0].goodput_rps


def test_a_lower_price_never_raises_the_cost_at_a_fixed_target(write_yaml, tmp_path) -> None:
    costs = []
    for price in ("$2.5/h", "$1.9/h", "$1.2/h", "$0.6/h"):
        path = write_yaml(OFFERS.replace("$1.9/h", price), name="offers.yaml")
        costs.append(planner.provision_offers(path, tmp_path, target_rps=45.0, **FAST).chosen.cost_per_hour)
    assert costs == sorted(costs, reverse=True) and costs[-1] < costs[0]


SINGLE_TYPE = (
    SERVING
    + """offers:
  - {gpu: L40, price: $1.9/h, gpus_per_node: 1, max_gpus: 3}
  - {gpu: L40, price: $1.7/h, gpus_per_node: 2, max_gpus: 4}
"""
)


def homogeneous_oracle(write_yaml, budget: float) -> tuple[float, float]:
    """(goodput, $/h) of the best cluster of L40 nodes within the budget: every node count of both shapes,
    each cluster written by hand and solved in full."""
    best = (0.0, 0.0)
    for ones, twos in itertools.product(range(4), range(3)):
        cost = 1.9 * ones + 2 * 1.7 * twos
        if cost > budget or ones + twos == 0:
            continue
        nodes = [f"  - {{name: a{i}, gpu: L40, count: 1, nic: 100Gbps, price: $1.9/h}}" for i in range(ones)]
        nodes += [f"  - {{name: b{i}, gpu: L40, count: 2, nic: 100Gbps, price: $1.7/h}}" for i in range(twos)]
        path = write_yaml(SERVING + "nodes:\n" + "\n".join(nodes) + "\n", name=f"h{ones}{twos}.yaml")
        try:
            goodput = plan_goodput(planner.solve(planner.load_cluster(path), **FAST))
        except InfeasibleError:
            continue
        if goodput > best[0] * (1 + 1e-3) or (goodput >= best[0] * (1 - 1e-3) and cost < best[1]):
            best = (goodput, cost)
    return best


@pytest.mark.parametrize("budget", [4.0, 6.0, 8.5])
def test_a_single_type_gives_the_best_homogeneous_cluster(write_yaml, tmp_path, budget) -> None:
    path = write_yaml(SINGLE_TYPE, name="offers.yaml")
    chosen = planner.provision_offers(path, tmp_path, budget=budget, **FAST).chosen
    goodput, cost = homogeneous_oracle(write_yaml, budget)
    assert chosen.goodput_rps == pytest.approx(goodput, rel=1e-3)
    assert chosen.cost_per_hour == pytest.approx(cost)


def test_plan_goodput_is_the_plans_goodput_or_its_throughput(tiny_cluster) -> None:
    plan = planner.solve(tiny_cluster, seed=0, time_limit=10)
    expected = getattr(plan.summary, "goodput_rps", None)
    assert plan_goodput(plan) == (plan.summary.throughput_rps if expected is None else expected)


def test_disaggregated_roles_reach_the_cut_and_the_plan_matches_solve(run_cli, offers_file, tmp_path) -> None:
    out = tmp_path / "out"
    options = ("--roles", "disaggregated", "--no-verify", "--time-limit", "10", "-q")
    result = run_cli("provision", offers_file, "--target-rps", "30", *options, "-o", out)
    assert result.exit_code == 0, result.output
    again = tmp_path / "again.yaml"
    assert run_cli("solve", out / "cluster.yaml", *options, "-o", again).exit_code == 0
    assert (out / "plan.yaml").read_bytes() == again.read_bytes()
    plan = planner.read_plan(out / "plan.yaml")
    assert {r.role for r in plan.replicas} <= {"prefill", "decode"} and plan_goodput(plan) >= 30
