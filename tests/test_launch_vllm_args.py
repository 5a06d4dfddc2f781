"""launcher.vllm_args: a plan replica → `vllm serve` argv and env, and the reasons a plan cannot be launched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.errors import LaunchError
from launcher.vllm_args import EngineOptions, build_launches, gpu_index, kv_transfer_config, node_of, plan_problems
from planner.inputs.catalog import Catalog
from planner.inputs.cluster import load_cluster
from planner.plans.schema import Plan, ReplicaPlan, StagePlan

THREE_NODES = Path(__file__).resolve().parent / "fakes" / "three-nodes.yaml"
OPTIONS = EngineOptions(model="meta-llama/Llama-3.1-8B", served_name="llama-3.1-8b")


@pytest.fixture
def three(catalog: Catalog):
    return load_cluster(THREE_NODES, catalog)


@pytest.fixture
def plan(three, hand_replica, hand_plan) -> Plan:
    """Prefill TP=1, prefill PP=2 across two nodes (uneven split), decode TP=2, decode TP=1."""
    return hand_plan(
        three,
        hand_replica(three, "prefill", ["a100-0/0"]),
        hand_replica(three, "prefill", ["a100-1/0"], ["l40-0/0"], split=[14]),
        hand_replica(three, "decode", ["a100-1/1"]),
        hand_replica(three, "decode", ["l40-0/1"]),
        hand_replica(three, "decode", ["a100-0/1"]),
    )


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_single_node_replica_argv_and_env(plan: Plan) -> None:
    launches = {lau.replica.id: lau for lau in build_launches(plan, OPTIONS)}
    replica = next(r for r in plan.replicas if r.gpus == ["a100-0/0"])
    (process,) = launches[replica.id].processes
    argv = process.argv
    assert argv[:3] == ("vllm", "serve", "meta-llama/Llama-3.1-8B")
    assert flag(argv, "--served-model-name") == "llama-3.1-8b"
    assert flag(argv, "--tensor-parallel-size") == "1" and flag(argv, "--pipeline-parallel-size") == "1"
    assert flag(argv, "--distributed-executor-backend") == "mp"
    assert flag(argv, "--max-num-seqs") == str(replica.engine.max_num_seqs)
    assert flag(argv, "--max-num-batched-tokens") == str(replica.engine.max_num_batched_tokens)
    assert flag(argv, "--max-model-len") == str(replica.engine.max_model_len)
    assert float(flag(argv, "--gpu-memory-utilization")) == replica.engine.gpu_memory_utilization
    assert flag(argv, "--dtype") == "float16"
    assert json.loads(flag(argv, "--kv-transfer-config")) == {
        "kv_connector": "NixlConnector",
        "kv_role": "kv_producer",
        "engine_id": replica.id,
    }
    assert "--nnodes" not in argv and "--headless" not in argv
    assert process.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert "VLLM_PP_LAYER_PARTITION" not in process.env
    assert process.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == "a100-0"  # node name stands in for its address
    assert launches[replica.id].url == f"http://a100-0:{flag(argv, '--port')}"


def test_multi_node_pipeline_gets_ranks_headless_and_uneven_split(plan: Plan) -> None:
    hosts = {"a100-0": "10.0.0.1", "a100-1": "10.0.0.2", "l40-0": "10.0.0.3"}
    launch = next(lau for lau in build_launches(plan, OPTIONS, hosts) if lau.replica.pp == 2)
    rank0, rank1 = launch.processes
    assert (rank0.node, rank1.node) == ("a100-1", "l40-0")
    for rank, process in enumerate(launch.processes):
        assert flag(process.argv, "--nnodes") == "2" and flag(process.argv, "--node-rank") == str(rank)
        assert flag(process.argv, "--master-addr") == "10.0.0.2"
        assert flag(process.argv, "--master-port") == flag(rank0.argv, "--master-port")
        assert process.env["VLLM_PP_LAYER_PARTITION"] == "14,18"
        assert process.env["CUDA_VISIBLE_DEVICES"] == "0"
        assert process.env["VLLM_HOST_IP"] == hosts[process.node]
        assert process.env["VLLM_NIXL_SIDE_CHANNEL_HOST"] == hosts[process.node]
    assert not rank0.headless and rank1.headless
    assert "--port" in rank0.argv and "--port" not in rank1.argv
    assert launch.url == f"http://10.0.0.2:{flag(rank0.argv, '--port')}"


def test_ports_are_distinct_and_deterministic(plan: Plan) -> None:
    first, again = build_launches(plan, OPTIONS), build_launches(plan, OPTIONS)
    assert first == again
    ports = [lau.port for lau in first]
    assert len(set(ports)) == len(ports) == len(plan.replicas)
    side = [(lau.ports.side_channel, lau.replica.tp * lau.replica.pp) for lau in first]
    assert all(lau.ports.side_channels == lau.replica.tp * lau.replica.pp for lau in first)
    blocks = [set(range(start, start + width)) for start, width in side]
    assert sum(map(len, blocks)) == len(set().union(*blocks)), "side-channel port blocks overlap"


@pytest.mark.parametrize(
    ("connector", "name"),
    [("nixl", "NixlConnector"), ("mooncake", "MooncakeConnector"), ("lmcache", "LMCacheConnectorV1")],
)
def test_connectors_and_roles(plan: Plan, connector: str, name: str) -> None:
    for replica in plan.replicas:
        config = json.loads(kv_transfer_config(replica, connector))
        role = "kv_producer" if replica.role == "prefill" else "kv_consumer"
        assert config == {"kv_connector": name, "kv_role": role, "engine_id": replica.id}
    launches = build_launches(plan, EngineOptions(model="m", served_name="m", connector=connector))
    nixl_env = all("VLLM_NIXL_SIDE_CHANNEL_PORT" in p.env for lau in launches for p in lau.processes)
    assert nixl_env == (connector == "nixl")


def test_engine_cmd_and_extra_args(plan: Plan) -> None:
    options = EngineOptions(
        model="m", served_name="s", engine_cmd=("python", "fake.py"), extra_args=("--enforce-eager",)
    )
    for launch in build_launches(plan, options):
        for process in launch.processes:
            assert process.argv[:4] == ("python", "fake.py", "serve", "m")
            assert process.argv[-1] == "--enforce-eager"


def test_fp8_plan_asks_for_fp8_weights_and_kv(plan: Plan) -> None:
    launch = build_launches(plan.model_copy(update={"dtype": "fp8"}), OPTIONS)[0]
    argv = launch.processes[0].argv
    assert "--dtype" not in argv
    assert flag(argv, "--quantization") == "fp8" and flag(argv, "--kv-cache-dtype") == "fp8"


def edit(replica: ReplicaPlan, **changes) -> ReplicaPlan:
    return replica.model_copy(update=changes)


def test_problems_are_all_listed(plan: Plan) -> None:
    assert plan_problems(plan, "nixl") == []
    decode = next(r for r in plan.replicas if r.role == "decode")
    pp_prefill = next(r for r in plan.replicas if r.pp == 2)
    stages = pp_prefill.stages
    bad_decode = edit(decode, pp=2, tp=1, gpus=pp_prefill.gpus, stages=stages, gpu_types=pp_prefill.gpu_types)
    back_and_forth = edit(
        pp_prefill,
        pp=3,
        gpu_types=["A100-80G", "L40", "A100-80G"],
        stages=[
            StagePlan(gpus=["a100-1/0"], layers=(0, 10)),
            StagePlan(gpus=["l40-0/0"], layers=(10, 20)),
            StagePlan(gpus=["a100-1/1"], layers=(20, 32)),
        ],
    )
    replicas = [
        bad_decode if r.id == decode.id else back_and_forth if r.id == pp_prefill.id else r for r in plan.replicas
    ]
    problems = plan_problems(plan.model_copy(update={"replicas": replicas}), "nixl")
    text = "\n".join(problems)
    assert f"replica {decode.id}: a decode replica with PP=2; NIXL KV transfer needs decode PP = 1." in problems
    assert (
        f"replica {pp_prefill.id}: the stages on one node must be consecutive (node order a100-1, l40-0, a100-1)."
        in text
    )
    assert "plan uses GPU(s) a100-1/0, l40-0/0 in more than one replica." in problems


def test_uneven_gpu_count_per_node(plan: Plan) -> None:
    prefill = next(r for r in plan.replicas if r.pp == 2)
    two_on_a = edit(
        prefill,
        tp=1,
        pp=3,
        gpu_types=["A100-80G", "A100-80G", "L40"],
        gpus=["a100-1/0", "a100-1/1", "l40-0/0"],
        stages=[
            StagePlan(gpus=["a100-1/0"], layers=(0, 10)),
            StagePlan(gpus=["a100-1/1"], layers=(10, 20)),
            StagePlan(gpus=["l40-0/0"], layers=(20, 32)),
        ],
    )
    assert plan_problems(plan.model_copy(update={"replicas": [two_on_a], "routes": []}), "nixl") == [
        f"replica {prefill.id}: a replica across nodes needs the same number of GPUs on each node "
        "(a100-1: 2, l40-0: 1).",
        "the plan routes no traffic: no P→D route and no colocated replica has a positive rate.",
    ]


def test_tp_sizes_must_divide_with_every_connector(plan: Plan) -> None:
    """The planner's rule (planner.scheduler.launchability): any KV connector needs P/D TP sizes that divide."""
    prefill = next(r for r in plan.replicas if r.role == "prefill" and r.pp == 1)
    decode = next(r for r in plan.replicas if r.role == "decode")
    tp3 = edit(
        prefill, tp=3, gpus=["x/0", "x/1", "x/2"], stages=[StagePlan(gpus=["x/0", "x/1", "x/2"], layers=(0, 32))]
    )
    tp2 = edit(decode, tp=2, gpus=["y/0", "y/1"], stages=[StagePlan(gpus=["y/0", "y/1"], layers=(0, 32))])
    route = plan.routes[0].model_copy(update={"source": tp3.id, "target": tp2.id})
    bad = plan.model_copy(update={"replicas": [tp3, tp2], "routes": [route]})
    for connector, name in (("nixl", "NIXL"), ("mooncake", "Mooncake"), ("lmcache", "LMCache")):
        assert plan_problems(bad, connector) == [
            f"route {tp3.id} → {tp2.id}: TP 3 and 2 do not divide one another ({name} KV transfer needs that)."
        ]


def test_a_route_into_a_prefill_replica_is_a_problem(plan: Plan) -> None:
    """Found by the fuzzer: a plan whose route ends at a prefill replica reached the router's config and its
    pydantic error escaped `hexlaunch --dry-run`; the launch rule names the route instead."""
    prefill = next(r for r in plan.replicas if r.role == "prefill")
    loop = plan.routes[0].model_copy(update={"source": prefill.id, "target": prefill.id})
    problems = plan_problems(plan.model_copy(update={"routes": [*plan.routes, loop]}), "nixl")
    assert f"route {prefill.id} → {prefill.id} is not a prefill → decode pair." in problems


def test_a_plan_that_routes_no_traffic_is_refused(plan: Plan, three, hand_replica, hand_plan) -> None:
    """RoutingPolicy needs a positive route or colocated replica; plan_problems says so before the router would fail."""
    idle = [r.model_copy(update={"rate_rps": 0.0}) for r in plan.routes]
    assert plan_problems(plan.model_copy(update={"routes": idle}), "nixl") == [
        "the plan routes no traffic: no P→D route and no colocated replica has a positive rate."
    ]
    colocated = hand_plan(three, hand_replica(three, "colocated", ["a100-0/0"]))
    assert colocated.routes == [] and plan_problems(colocated, "none") == []


def test_malformed_gpu_ids_are_problems_not_tracebacks(plan: Plan) -> None:
    """read_plan rejects such ids; a plan built in code gets them listed (and the parsers raise LaunchError)."""
    prefill = next(r for r in plan.replicas if r.role == "prefill" and r.pp == 1)
    bad = edit(prefill, gpus=["a100-0"], stages=[prefill.stages[0].model_copy(update={"gpus": ["a100-0"]})])
    problems = plan_problems(plan.model_copy(update={"replicas": [bad], "routes": plan.routes}), "nixl")
    assert f"replica {prefill.id}: GPU id 'a100-0' is not of the form node/index (e.g. a100-0/3)." in problems
    for parse in (node_of, gpu_index):
        for gpu in ("a100-0", "/3", "a100-0/x", "a100-0/"):
            with pytest.raises(LaunchError, match="is not of the form node/index"):
                parse(gpu)
    assert (node_of("a100-0/3"), gpu_index("a100-0/3")) == ("a100-0", "3")
