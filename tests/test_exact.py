"""The exact oracle (planner.reference.exact) against a naive brute force that shares none of its reductions.

The brute force lists every set partition of the GPUs, every role of every group, and every layout of
every group in its role (each TP size, node order and layer split, by itertools), and scores each
plan with `plan_flow`. The oracle must find exactly its optimum; its layout reduction (one option per
TP and layers per node) must keep, for each such class, the fastest layout the brute force finds; its
LP bound must never undercut a real plan.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from planner.costs.layout import Layout, Stage
from planner.inputs.cluster import load_cluster
from planner.reference.exact import TooLarge, exact_optimum
from planner.reference.exact_bound import Choice, Sink, hull_bound
from planner.reference.exact_layouts import by_node, option_assessment, prefill_options
from planner.scheduler.assess import assess
from planner.scheduler.launchability import valid_tp
from planner.scheduler.network import plan_flow

TINY = """
model: llama-3.1-8b
workload: {{prompt_tokens: {prompt}, output_tokens: 256}}
nodes:
  - {{name: a, gpu: {a}, count: 1, nic: 25Gbps}}
  - {{name: b, gpu: {b}, count: 1, nic: 100Gbps}}
  - {{name: c, gpu: {c}, count: 1, nic: 10Gbps}}
network:
  default: {{bandwidth: {link}, latency: 10us}}
"""


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]
        yield [[first], *partition]


def every_layout(cluster, group, role):
    """Every layout vLLM could run (launch rules), assessed; no reduction of any kind."""
    parts = by_node(cluster, group)
    counts = {len(p) for p in parts.values()}
    if len(counts) > 1:
        return []
    found = []
    for tp in range(1, min(counts) + 1):
        if min(counts) % tp or not valid_tp(tp, cluster.model):
            continue
        for order in itertools.permutations(parts):
            stages = [tuple(parts[n][i : i + tp]) for n in order for i in range(0, len(parts[n]), tp)]
            if role == "decode" and len(stages) > 1:
                continue
            layers = cluster.model.layers
            for cuts in itertools.combinations(range(1, layers), len(stages) - 1):
                bounds = [0, *cuts, layers]
                layout = Layout(tuple(Stage(s, x, y) for s, x, y in zip(stages, bounds, bounds[1:])))
                if (a := assess(cluster, role, layout)) is not None:
                    found.append(a)
    return found


def brute_force(cluster) -> float:
    gpus = [slot.id for slot in cluster.gpus]
    options = {}
    best = 0.0
    for partition in set_partitions(gpus):
        groups = [tuple(sorted(g)) for g in partition]
        for g in groups:
            for role in ("prefill", "decode"):
                if (g, role) not in options:
                    options[(g, role)] = every_layout(cluster, g, role)
        for roles in itertools.product(("prefill", "decode", None), repeat=len(groups)):
            lists = [options[(g, r)] for g, r in zip(groups, roles) if r is not None]
            if not any(r == "prefill" for r in roles) or not any(r == "decode" for r in roles):
                continue
            for choice in itertools.product(*lists):
                best = max(best, plan_flow(cluster, list(choice), launchable=True).value)
    return best


TWINS = """
model: llama-2-7b
workload: {prompt_tokens: 2048, output_tokens: 256}
nodes:
  - {name: a, gpu: A10, count: 1, nic: 10Gbps}
  - {name: b, gpu: RTX-A6000, count: 2, nic: 100Gbps}
network:
  default: {bandwidth: 1Gbps, latency: 10us}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        TINY.format(prompt=1024, a="H100-SXM", b="RTX-3090", c="L4", link="1Gbps"),
        TINY.format(prompt=512, a="A10", b="L40", c="RTX-4090", link="25Gbps"),
        TWINS,  # two identical GPUs in different roles: the oracle's symmetry reduction must not cut plans
    ],
    ids=["slow-net", "fast-net", "twins"],
)
def test_the_oracle_finds_the_brute_force_optimum(text, write_yaml, catalog):
    cluster = load_cluster(write_yaml(text), catalog)
    assert exact_optimum(cluster).throughput_rps == pytest.approx(brute_force(cluster), rel=1e-7)


def test_one_option_per_layers_per_node_is_the_fastest_such_layout(write_yaml, catalog):
    text = TINY.format(prompt=1024, a="A10", b="L4", c="RTX-3090", link="10Gbps")
    text = text.replace("llama-3.1-8b", "llama-2-13b")
    cluster = load_cluster(write_yaml(text), catalog)
    group = ("a/0", "c/0")
    fastest: dict[tuple, float] = {}
    for a in every_layout(cluster, group, "prefill"):
        per_node = {}
        for s in a.layout.stages:
            per_node[s.gpus[0].split("/")[0]] = per_node.get(s.gpus[0].split("/")[0], 0) + s.layers
        key = (a.layout.tp, tuple(sorted(per_node.items())))
        fastest[key] = max(fastest.get(key, 0.0), a.capacity_rps)
    found = prefill_options(cluster, group, True)
    options = {(o.tp, tuple(sorted(zip(o.order, o.per_node)))): o.capacity_rps for o in found}
    assert options.keys() == fastest.keys()
    for key, capacity in fastest.items():
        assert options[key] == pytest.approx(capacity, rel=1e-12), key


def test_the_lp_bound_never_undercuts_a_real_plan(write_yaml, catalog):
    text = TINY.format(prompt=1024, a="H100-SXM", b="RTX-3090", c="L4", link="1Gbps")
    cluster = load_cluster(write_yaml(text), catalog)
    options = prefill_options(cluster, ("a/0", "b/0"), True)
    decode = every_layout(cluster, ("c/0",), "decode")
    sinks = [Sink(d.nodes[0], d.layout.tp, d.capacity_rps) for d in decode]
    choices = [Choice(o.tp, dict(zip(o.order, o.per_node)), o.capacity_rps) for o in options]
    bound = hull_bound(cluster, [choices], sinks, True)
    rng = np.random.default_rng(0)
    for k in rng.choice(len(options), size=min(20, len(options)), replace=False):
        real = plan_flow(cluster, [option_assessment(cluster, options[int(k)]), *decode], launchable=True).value
        assert real <= bound


def test_out_of_reach_instances_raise_instead_of_guessing(write_yaml, catalog):
    text = TINY.format(prompt=1024, a="A10", b="L4", c="RTX-3090", link="1Gbps")
    cluster = load_cluster(write_yaml(text), catalog)
    with pytest.raises(TooLarge):
        exact_optimum(cluster, time_limit=0.0)


@pytest.mark.slow
def test_no_plan_beats_the_oracle_on_a_skewed_cluster(tmp_path, catalog):
    """Skewed cluster seed 0 (benchmarks/optimality.py): a pipelined prefill beside identical GPUs in both
    roles. The scheduler's plan is a plan too, so the oracle must be at least as good (it once was not:
    identical groups were ordered by the wrong neighbour)."""
    from planner import solve
    from planner.reference.synthetic import skewed_cluster, write_cluster

    cluster = load_cluster(write_cluster(skewed_cluster(np.random.default_rng(0)), tmp_path / "c.yaml"), catalog)
    optimum = exact_optimum(cluster, time_limit=120).throughput_rps
    plan = solve(cluster, seed=0, time_limit=10, roles="disaggregated")  # the oracle's plan space
    assert plan.summary.throughput_rps <= optimum * (1 + 1e-9)
