"""vLLM 0.33's P/D rules in planner.scheduler.launchability, and where the planner and the launcher apply them:
KV-head replication across unequal TP, PP with a sliding-window/hybrid KV cache, a PP replica's sequence budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.vllm_args import plan_problems
from planner.errors import PlanError
from planner.inputs.catalog import kv_layout_of
from planner.inputs.cluster import load_cluster
from planner.plans.checks import evaluate
from planner.scheduler import launchability as rules
from planner.scheduler.assess import assess, route_capacity
from planner.scheduler.layouts import candidate_layouts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("tp_prefill", "tp_decode", "kv_heads", "allowed"),
    [
        (1, 1, 8, True),
        (2, 8, 8, True),  # decode wider: it reads head slices of one prefill rank
        (8, 2, 8, True),  # prefill wider, each rank still holds distinct heads
        (16, 8, 8, False),  # prefill wider AND replicating (16 ranks > 8 heads): the handshake asserts
        (8, 16, 8, True),  # the decode may replicate
        (2, 1, 1, False),  # multi-query model: any prefill TP > 1 replicates
        (4, 6, 8, False),  # sizes that do not divide (TransferTopology.tp_ratio asserts)
        (3, 3, 1, True),
    ],
)
def test_pair_rule_cases_read_from_the_connector(tp_prefill: int, tp_decode: int, kv_heads: int, allowed: bool) -> None:
    assert rules.pair_allowed(tp_prefill, tp_decode, kv_heads) is allowed


def test_route_problem_names_the_rule() -> None:
    assert rules.route_problem(16, 8, "nixl", kv_heads=8) == (
        "prefill TP 16 > decode TP 8 while the prefill replicates the model's 8 KV heads "
        "(NIXL KV transfer, vLLM 0.33, refuses that)."
    )
    assert rules.route_problem(8, 16, "nixl", kv_heads=8) is None  # decode replicating is fine
    assert rules.route_problem(16, 8, "nixl") is None  # unknown model: the launcher cannot tell
    assert rules.route_problem(16, 8, "none", kv_heads=8) is None


def test_pipeline_rules() -> None:
    assert rules.pipeline_kv_allowed(1, "hybrid", True) and rules.pipeline_kv_allowed(4, "full", True)
    assert not rules.pipeline_kv_allowed(2, "sliding_window", True) and not rules.pipeline_kv_allowed(2, "hybrid", True)
    assert rules.pipeline_kv_allowed(2, "hybrid", False)  # no connector: a cost-model exercise
    assert rules.pipeline_batch_problem(4, 3) == (
        "max_num_seqs=3 < PP=4: the pipeline could never hold a micro-batch per stage."
    )
    assert rules.pipeline_batch_problem(4, 4) is None and rules.pipeline_batch_problem(1, 1) is None


@pytest.mark.parametrize(
    ("config", "layout"),
    [
        ({"model_type": "llama"}, "full"),
        ({"model_type": "mistral", "sliding_window": 4096}, "sliding_window"),
        ({"model_type": "mistral", "sliding_window": None}, "full"),
        ({"model_type": "qwen2", "sliding_window": 131072, "use_sliding_window": False}, "full"),
        ({"model_type": "gemma2", "sliding_window": 4096}, "hybrid"),
        ({"model_type": "x", "layer_types": ["sliding_attention", "full_attention"]}, "hybrid"),
        ({"model_type": "x", "layer_types": ["full_attention", "full_attention"]}, "full"),
    ],
)
def test_kv_layout_from_a_config_json(config: dict, layout: str) -> None:
    assert kv_layout_of(config) == layout


@pytest.fixture(scope="module")
def mistral(catalog, tmp_path_factory):
    text = (EXAMPLES / "tiny.yaml").read_text()
    model = next(line for line in text.splitlines() if line.strip().startswith("model:"))
    path = tmp_path_factory.mktemp("mistral") / "cluster.yaml"
    path.write_text(text.replace(model, model.split(":")[0] + ": mistral-7b"))
    return load_cluster(path, catalog)


def test_a_sliding_window_model_gets_no_pipeline_when_kv_moves(mistral, tiny_cluster) -> None:
    assert mistral.model.kv_layout == "sliding_window" and tiny_cluster.model.kv_layout == "full"
    gpus = ["a100-0/0", "l40-0/0"]  # two nodes: only a pipeline can span them
    assert candidate_layouts(mistral, gpus, "prefill", launchable=True) == []
    # PP 2 in both node orders (the search tries every order of a group's nodes, issue 13)
    assert [lay.pp for lay in candidate_layouts(mistral, gpus, "prefill", launchable=False)] == [2, 2]
    assert [lay.pp for lay in candidate_layouts(tiny_cluster, gpus, "prefill", launchable=True)] == [2, 2]
    problems = rules.layout_problems(
        [(["a100-0/0"], (0, 16)), (["l40-0/0"], (16, 32))], role="prefill", connector="nixl", model=mistral.model
    )
    assert [p.text for p in problems] == [
        "PP=2 with a sliding_window KV cache; NIXL KV transfer (vLLM 0.33) needs PP = 1 here."
    ]


def test_a_pipeline_prefill_admits_a_micro_batch_per_stage(tiny_cluster, hand_replica, hand_plan) -> None:
    single = assess(tiny_cluster, "prefill", candidate_layouts(tiny_cluster, ["a100-0/0"], "prefill", True)[0])
    piped = hand_replica(tiny_cluster, "prefill", ["a100-0/0"], ["l40-0/0"])
    assert piped.layout.pp == 2 and single is not None
    # the capacity assumes PP micro-batches of the single-stage batch size in flight; vLLM caps them all
    assert piped.engine.max_num_seqs % 2 == 0 and piped.engine.max_num_seqs >= 2
    plan = hand_plan(tiny_cluster, piped, hand_replica(tiny_cluster, "decode", ["a100-0/1"]))
    prefill = next(r for r in plan.replicas if r.role == "prefill")
    starved = plan.model_copy(
        update={
            "replicas": [
                r.model_copy(update={"engine": r.engine.model_copy(update={"max_num_seqs": 1})}) if r is prefill else r
                for r in plan.replicas
            ]
        }
    )
    with pytest.raises(PlanError, match=r"\.engine: max_num_seqs=1 < PP=2"):
        evaluate(starved, tiny_cluster)
    assert f"replica {prefill.id}.engine: max_num_seqs=1 < PP=2" in " ".join(plan_problems(starved, "nixl"))


def test_the_planner_never_routes_a_replicating_prefill_to_a_smaller_decode(catalog, tmp_path, hand_replica) -> None:
    """A multi-query model (1 KV head): a TP-2 prefill replicates it, so it may feed TP-2 decodes, not TP-1."""
    import json

    config = {
        "model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
        "num_key_value_heads": 1, "intermediate_size": 14336, "vocab_size": 128256, "max_position_embeddings": 8192,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    text = (EXAMPLES / "tiny.yaml").read_text().replace("model: llama-3.1-8b", f"model: {tmp_path / 'config.json'}")
    (tmp_path / "cluster.yaml").write_text(text)
    mqa = load_cluster(tmp_path / "cluster.yaml", catalog)
    prefill = hand_replica(mqa, "prefill", ["a100-0/0", "a100-0/1"])
    assert route_capacity(mqa, prefill, hand_replica(mqa, "decode", ["l40-0/0"]), True) == 0
    assert route_capacity(mqa, prefill, hand_replica(mqa, "decode", ["l40-0/1", "l40-0/2"]), True) > 0
    assert route_capacity(mqa, prefill, hand_replica(mqa, "decode", ["l40-0/0"]), False) > 0  # connector "none"
