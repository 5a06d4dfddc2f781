"""The simulator: conservation, monotonicity, an analytic single-replica oracle, link sharing, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from planner.costs.layout import Layout, Stage
from planner.costs.replica import decode_step_time, prefill_batch_time
from planner.inputs.catalog import Catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster, Slo
from planner.plans.assemble import assemble
from planner.plans.schema import SolverInfo, write_plan
from planner.scheduler.assess import assess
from planner.sim.arrivals import Arrivals, poisson
from planner.sim.engine import Simulation
from planner.sim.sweeps import simulate_rate

SLO = Slo(2.0, 0.1)


@pytest.fixture(scope="module")
def mixed_plan(tiny_cluster, hand_replica, hand_plan):
    """Every replica kind: two prefill, two decode (one TP=2), one colocated."""
    return hand_plan(
        tiny_cluster,
        hand_replica(tiny_cluster, "prefill", ["a100-0/0"]),
        hand_replica(tiny_cluster, "prefill", ["l40-0/0"]),
        hand_replica(tiny_cluster, "decode", ["a100-0/2", "a100-0/3"]),
        hand_replica(tiny_cluster, "decode", ["l40-0/1"]),
        hand_replica(tiny_cluster, "colocated", ["l40-0/2"]),
    )


def test_conservation_every_request_finishes_once_or_is_dropped(tiny_cluster, mixed_plan):
    rng = np.random.default_rng(3)
    base = poisson(tiny_cluster.workload, 1.3 * mixed_plan.summary.throughput_rps, 20.0, rng)
    prompt, output = base.prompt.copy(), base.output.copy()
    prompt[::97] = 3000  # longer than max_model_len: must be reported dropped, not lost
    arrivals = Arrivals(base.time, prompt, output)
    sim = Simulation(mixed_plan, tiny_cluster, arrivals, slo=SLO, warmup=0.0, duration=20.0, drain=math.inf)
    result = sim.run()
    assert result.arrived == len(arrivals)
    assert result.unfinished == 0
    assert result.finished + result.dropped == result.arrived
    assert result.dropped == len(prompt[::97])
    for r in result.requests:
        assert (r.finish >= 0) != bool(r.dropped), r
        if r.finish >= 0:
            assert r.arrival <= r.first_token <= r.finish
    kinds = {rid[0] for rid, u in result.replica_utilisation.items() if u > 0}
    assert kinds == {"p", "d", "c"}


def test_more_load_never_serves_more_than_capacity(tiny_cluster, hand_replica, hand_plan):
    plan = hand_plan(
        tiny_cluster,
        hand_replica(tiny_cluster, "prefill", ["l40-0/0"]),
        hand_replica(tiny_cluster, "decode", ["l40-0/1"]),
    )
    capacity = plan.summary.throughput_rps
    served = []
    for load in (0.3, 0.7, 1.2, 2.0, 3.0):
        result = simulate_rate(plan, tiny_cluster, load * capacity, duration=120.0, seed=1, drain=0.0)
        served.append(result.throughput_rps)
        assert result.throughput_rps <= 1.05 * min(result.offered_rps, capacity), (load, result.throughput_rps)
    assert served[-1] >= 0.8 * capacity  # and overload does serve close to capacity


def test_same_seed_same_result(tiny_cluster, mixed_plan):
    a = simulate_rate(mixed_plan, tiny_cluster, 10.0, duration=20.0, seed=7).to_json()
    b = simulate_rate(mixed_plan, tiny_cluster, 10.0, duration=20.0, seed=7).to_json()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# ----------------------------------------------------------------------------- analytic oracle

TOY = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 512,
    "vocab_size": 1000,
    "max_position_embeddings": 4096,
}
H, N, D, F, V, L, B = 256, 4, 64, 512, 1000, 2, 2  # the toy's shape; B = bytes per fp16 value
BW = 100e9  # toy GPU memory bandwidth, efficiency 1, compute effectively infinite → memory-bound
NET_BW, NET_LAT = 1e8, 1e-3  # 0.8 Gbit/s between the two nodes: two KV transfers overlap
PROMPT, OUTPUT = 100, 10


@pytest.fixture(scope="module")
def toy_cluster(tmp_path_factory, catalog: Catalog) -> Cluster:
    folder = tmp_path_factory.mktemp("toy")
    (folder / "config.json").write_text(json.dumps(TOY))
    gpu = (
        "{name: toy, memory: 10GB, memory_bandwidth: 100GB/s, fp16: 1000000TFLOPS, "
        "efficiency: {compute: 1.0, memory: 1.0}, intra_node_link: pcie4}"
    )
    (folder / "cluster.yaml").write_text(
        f"model: config.json\nworkload: {{prompt_tokens: {PROMPT}, output_tokens: {OUTPUT}}}\nnodes:\n"
        f"  - {{name: n0, gpu: {gpu}, count: 1, nic: 100Gbps, price: $1/h}}\n"
        f"  - {{name: n1, gpu: {gpu}, count: 1, nic: 100Gbps, price: $1/h}}\n"
        "network:\n  default: {bandwidth: 800Mbps, latency: 1ms}\n"
    )
    return load_cluster(folder / "cluster.yaml", catalog)


ONE_GPU = Layout((Stage(("n0/0",), 0, L),))


def _prefill_seconds(cluster: Cluster, prompts: list[int]) -> float:
    """The cost model's time of one prefill batch on one toy GPU (the simulator must charge exactly this)."""
    return prefill_batch_time(cluster, ONE_GPU, prompts)[1]


def _decode_seconds(cluster: Cluster, batch: int) -> float:
    """All decode steps of `batch` equal requests: contexts prompt+1 … prompt+output−1."""
    return sum(decode_step_time(cluster, ONE_GPU, batch, PROMPT + 1 + k) for k in range(OUTPUT - 1))


def _plan(cluster: Cluster, colocated: bool):
    one = Layout((Stage(("n0/0",), 0, L),))
    two = Layout((Stage(("n1/0",), 0, L),))
    parts = (
        [assess(cluster, "colocated", one)]
        if colocated
        else [assess(cluster, "prefill", one), assess(cluster, "decode", two)]
    )
    return assemble(cluster, parts, SolverInfo(version="0.1.0"))


def _run(cluster: Cluster, colocated: bool, times: list[float]):
    arrivals = Arrivals(np.array(times), np.full(len(times), PROMPT), np.full(len(times), OUTPUT))
    return Simulation(
        _plan(cluster, colocated), cluster, arrivals, slo=SLO, warmup=0.0, duration=times[-1] + 1, drain=math.inf
    ).run()


def test_single_colocated_replica_latency_is_analytic(toy_cluster):
    result = _run(toy_cluster, True, [0.0, 10.0, 20.0])  # far apart: no queueing
    ttft = _prefill_seconds(toy_cluster, [PROMPT])
    for r in result.requests:
        assert r.first_token - r.arrival == pytest.approx(ttft, rel=1e-9)
        assert r.finish - r.arrival == pytest.approx(ttft + _decode_seconds(toy_cluster, 1), rel=1e-9)


def test_disaggregated_latency_adds_kv_transfer(toy_cluster):
    result = _run(toy_cluster, False, [0.0, 10.0])
    kv = PROMPT * L * 2 * N * D * B / NET_BW + NET_LAT
    for r in result.requests:
        assert r.finish - r.arrival == pytest.approx(
            _prefill_seconds(toy_cluster, [PROMPT]) + kv + _decode_seconds(toy_cluster, 1), rel=1e-9
        )


def test_concurrent_transfers_share_the_link(toy_cluster):
    """Two simultaneous arrivals: prefilled back to back (t1, t2 = 2·t1), so their transfers overlap."""
    result = _run(toy_cluster, False, [0.0, 0.0])
    alone = PROMPT * L * 2 * N * D * B / NET_BW  # one transfer with the link to itself
    t1 = _prefill_seconds(toy_cluster, [PROMPT])
    t2 = 2 * t1
    # the first token comes from the decode replica: TTFT includes the KV transfer
    assert [r.first_token for r in result.requests] == [r.kv_arrived for r in result.requests]
    # prefilled at t1 and t2; alone on [t1, t2), then half the bandwidth each; the link stays busy from t1
    # until 2·alone of bytes are done
    first_done = t2 + 2 * (alone - (t2 - t1))
    second_done = t1 + 2 * alone
    assert [r.kv_arrived for r in result.requests] == pytest.approx([first_done + NET_LAT, second_done + NET_LAT])
    assert result.link_utilisation == {"n0→n1": pytest.approx(2 * alone / result.sim_seconds, rel=1e-9)}


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def plan_file(tmp_path: Path, tiny_cluster, mixed_plan) -> Path:
    path = tmp_path / "plan.yaml"
    write_plan(mixed_plan, path)
    return path


def test_trace_parse_error_names_file_and_line(run_cli, plan_file, tmp_path, tiny_cluster):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6,10,5\n2023-11-16 18:15:47.6,ten,5\n")
    result = run_cli("simulate", plan_file, "--cluster", tiny_cluster.source, "--trace", bad)
    assert result.exit_code == 2
    assert f"{bad}: line 3: expected 'timestamp,int,int'" in result.stderr
    assert "Traceback" not in result.output


def test_trace_header_error(run_cli, plan_file, tmp_path, tiny_cluster):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,prompt,output\n")
    result = run_cli("simulate", plan_file, "--cluster", tiny_cluster.source, "--trace", bad)
    assert result.exit_code == 2
    assert f"{bad}: line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "1", "--trace", "x.csv"], "--rate and --trace: give one request source, not both."),
        (["--rate", "-1"], "--rate: expected a positive number, got -1.0."),
        (["--speedup", "0"], "--speedup: expected a positive number, got 0.0."),
    ],
)
def test_bad_options_exit_2(run_cli, plan_file, tiny_cluster, args, message):
    result = run_cli("simulate", plan_file, "--cluster", tiny_cluster.source, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_simulate_json_replays_trace(run_cli, plan_file, tiny_cluster):
    trace = tiny_cluster.source.parent / "traces" / "AzureLLMInferenceTrace_conv.csv"
    args = ("simulate", plan_file, "--cluster", tiny_cluster.source, "--trace", trace, "--duration", "60", "--json")
    first, second = run_cli(*args), run_cli(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    data = json.loads(first.stdout)
    assert data["arrived"] == data["finished"] + data["dropped"] + data["unfinished"]
    assert data["arrived"] > 150
