"""scheduler.launchability, rule by rule on plain data: one exact message per broken rule, the rules a plan for
connector `none` skips, the model's rules, and the plan-level checks (records, routes, shared GPUs, connectors)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from planner.scheduler import launchability as rules


@dataclass(frozen=True)
class Shape:
    heads: int = 32
    kv_heads: int = 8
    layers: int = 32
    kv_layout: str = "full"


def texts(stages, **options) -> list[str]:
    options = {"role": "prefill", "connector": "nixl", **options}
    return [p.at("r") for p in rules.layout_problems(stages, **options)]


def test_a_launchable_layout_has_no_problem() -> None:
    stages = [(["a/0", "a/1"], (0, 16)), (["b/0", "b/1"], (16, 32))]
    assert texts(stages, model=Shape(), known_gpus={"a/0", "a/1", "b/0", "b/1"}) == []


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([(["a/0", "b/0"], (0, 32))], "r.stages[0]: a TP group must sit on one node, got a, b."),
        ([(["a/0"], (1, 32))], "r.stages[0].layers: expected a range starting at layer 0, got [1, 32)."),
        (
            [(["a/0"], (0, 16)), (["a/1"], (20, 32))],
            "r.stages[1].layers: expected a range starting at layer 16, got [20, 32).",
        ),
        ([(["a/0"], (0, 0))], "r.stages[0].layers: expected a range starting at layer 0, got [0, 0)."),
        (
            [(["a/0", "a/1"], (0, 16)), (["a/2"], (16, 32))],
            "r.stages[1]: every stage needs the same TP size (2), got 1.",
        ),
        (
            [(["a/0"], (0, 10)), (["b/0"], (10, 20)), (["a/1"], (20, 32))],
            "r: the stages on one node must be consecutive (node order a, b, a).",
        ),
        (
            [(["a/0"], (0, 10)), (["a/1"], (10, 20)), (["b/0"], (20, 32))],
            "r: a replica across nodes needs the same number of GPUs on each node (a: 2, b: 1).",
        ),
    ],
)
def test_each_broken_rule_has_its_message(stages, message) -> None:
    assert texts(stages) == [message]


def test_decode_pp_needs_no_connector() -> None:
    stages = [(["a/0"], (0, 16)), (["a/1"], (16, 32))]
    assert texts(stages, role="decode") == ["r: a decode replica with PP=2; NIXL KV transfer needs decode PP = 1."]
    assert texts(stages, role="decode", connector="mooncake") == [
        "r: a decode replica with PP=2; Mooncake KV transfer needs decode PP = 1."
    ]
    assert texts(stages, role="prefill") == []
    assert texts(stages, role="decode", connector="none", launch=False) == []


def test_connector_none_skips_the_multi_node_rules_only() -> None:
    revisiting = [(["a/0"], (0, 10)), (["b/0"], (10, 20)), (["a/1"], (20, 32))]
    assert texts(revisiting, connector="none", launch=False) == []
    assert texts([(["a/0", "b/0"], (0, 32))], connector="none", launch=False) == [
        "r.stages[0]: a TP group must sit on one node, got a, b."
    ]


def test_model_rules_check_heads_and_layer_count() -> None:
    assert texts([(["a/0", "a/1", "a/2"], (0, 32))], model=Shape()) == [
        "r.stages[0]: TP 3 must divide the model's 32 attention heads and divide, or be a multiple of, its 8 KV heads."
    ]
    assert texts([(["a/0"], (0, 30))], model=Shape()) == ["r: stages cover layers [0, 30) but the model has 32."]
    assert texts([([f"a/{i}" for i in range(16)], (0, 32))], model=Shape()) == [], "16 is a multiple of 8 KV heads"


def test_unknown_gpus_are_named_and_their_stage_not_checked_further() -> None:
    assert texts([(["a/0", "z/9"], (5, 32))], known_gpus={"a/0"}) == ["r.stages[0]: GPU(s) z/9 are not in the cluster."]


def test_gpu_ids_and_tp_rules() -> None:
    assert rules.gpu_id_problem("a100-0/3") is None
    for bad in ("a100-0", "a100-0/x", "/3", "a100-0/"):
        assert rules.gpu_id_problem(bad) == f"GPU id {bad!r} is not of the form node/index (e.g. a100-0/3)."
    assert rules.node_of("a100-0/3") == "a100-0"
    assert [tp for tp in range(1, 33) if rules.valid_tp(tp, Shape())] == [1, 2, 4, 8, 16, 32]
    assert rules.tp_compatible(2, 4) and rules.tp_compatible(4, 2) and rules.tp_compatible(3, 3)
    assert not rules.tp_compatible(2, 3)
    assert rules.equal_per_node([2, 2, 2]) and rules.equal_per_node([]) and not rules.equal_per_node([2, 1])
    assert rules.revisits(["a", "b", "a"]) and not rules.revisits(["a", "a", "b"])


def test_record_problems_compare_the_fields_with_the_stages() -> None:
    assert rules.record_problems(2, 2, [2, 2], ["A100-80G", "L40"]) == []
    for tp, pp, sizes in ((2, 1, [2, 2]), (1, 2, [2, 2]), (2, 2, [2, 1])):
        (problem,) = rules.record_problems(tp, pp, sizes, ["x", "y"])
        assert problem.at("r") == f"r: tp={tp}, pp={pp} disagree with its {len(sizes)} stages."
    (problem,) = rules.record_problems(2, 2, [2, 2], ["A100-80G"])
    assert problem.at("r") == "r.gpu_types: 1 types for 2 stages."


def test_plan_level_rules() -> None:
    assert rules.route_problem(2, 3, "nixl") == "TP 2 and 3 do not divide one another (NIXL KV transfer needs that)."
    assert rules.route_problem(2, 3, "none") is None and rules.route_problem(2, 4, "lmcache") is None
    assert rules.shared_gpus([["a/0", "a/1"], ["a/1", "b/0"], ["b/0"]]) == (
        "plan uses GPU(s) a/1, b/0 in more than one replica."
    )
    assert rules.shared_gpus([["a/0"], ["a/1"]]) is None
    assert rules.connector_problem(["prefill", "decode"], "none") == (
        "connector 'none' can only run colocated replicas; prefill/decode need a KV connector."
    )
    assert rules.connector_problem(["colocated"], "none") is None
    assert rules.connector_problem(["prefill"], "nixl") is None
    assert rules.has_connector("nixl") and not rules.has_connector("none")
