"""The roofline cost model is never faster than physics, for every catalogue GPU and model.

Bounds are written here from first principles (not by calling the model's own FLOP counts):
- prefill of s-token prompts: per layer 2·P·s + 2·n·d·s² FLOPs (causal attention), plus the LM head;
- a decode step reads every layer's weights and the batch's KV cache once;
- no layout can beat Σ peak FLOP/s or Σ memory bandwidth of the GPUs it uses.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from pathlib import Path

import pytest

from planner.costs.allreduce import ring_seconds
from planner.costs.kvtransfer import kv_bytes_per_request, kv_transfer_time
from planner.costs.layout import Layout, Stage
from planner.costs.memory import check_model_fits, kv_bytes_per_token_layer, kv_capacity_tokens
from planner.costs.replica import (
    decode_perf,
    decode_step_time,
    hop_time,
    prefill_perf,
    prefill_stage_time,
    stage_hardware,
)
from planner.errors import InfeasibleError
from planner.inputs.catalog import load_catalog
from planner.inputs.problem import Cluster, Network, Node, NodeLink
from planner.inputs.workload import Lengths, Workload
from planner.scheduler.layouts import split_layers

CATALOG = load_catalog()
GPUS = sorted(CATALOG.gpus)
MODELS = sorted(CATALOG.models)
PROMPT, OUTPUT = 1024, 256
NETWORK = NodeLink(bandwidth=100e9 / 8, latency=10e-6)


def make_cluster(gpu_key: str, model_key: str, *, huge: bool = False, prompt: float = PROMPT) -> Cluster:
    """Two nodes of 2 GPUs of one type joined by 100 Gbit/s; `huge` gives each GPU 10 TB so every model fits."""
    gpu = CATALOG.gpus[gpu_key]
    if huge:
        gpu = dataclasses.replace(gpu, memory=10e12)
    link = CATALOG.link(gpu.intra_node_link)
    nodes = tuple(Node(name, gpu, 2, link, 400e9 / 8, 1.0) for name in ("n0", "n1"))
    return Cluster(
        source=Path("synthetic.yaml"),
        sha256="0" * 64,
        model=CATALOG.models[model_key],
        dtype="float16",
        workload=Workload(Lengths("fixed", prompt), Lengths("fixed", OUTPUT)),
        slo=None,
        objective="throughput",
        memory_utilization=0.9,
        nodes=nodes,
        network=Network(overrides={("n0", "n1"): NETWORK}),
    )


def layouts(layers: int) -> dict[str, Layout]:
    half = layers // 2
    return {
        "1 GPU": Layout((Stage(("n0/0",), 0, layers),)),
        "TP=2": Layout((Stage(("n0/0", "n0/1"), 0, layers),)),
        "PP=2": Layout((Stage(("n0/0",), 0, half), Stage(("n1/0",), half, layers))),
        "TP=2×PP=2": Layout((Stage(("n0/0", "n0/1"), 0, half), Stage(("n1/0", "n1/1"), half, layers))),
    }


def sum_peak(cluster: Cluster, layout: Layout) -> tuple[float, float]:
    """Σ peak FLOP/s and Σ memory bandwidth of the layout's GPUs."""
    gpus = [cluster.gpu_by_id[g].gpu for g in layout.gpus]
    return sum(g.flops(cluster.dtype) for g in gpus), sum(g.memory_bandwidth for g in gpus)


def prefill_flops(cluster: Cluster, n_seqs: float, s: float) -> float:
    m = cluster.model
    per_layer = 2 * m.params_per_layer * s + 2 * m.heads * m.head_dim * s * s
    return n_seqs * (m.layers * per_layer + 2 * m.vocab * m.hidden)


def decode_bytes(cluster: Cluster, batch: float, context: float) -> float:
    """Weights (all layers + LM head) and the batch's KV cache, each read once per step."""
    m, b = cluster.model, 2
    weights = (m.layers * m.params_per_layer + m.vocab * m.hidden) * b
    return weights + batch * context * m.layers * 2 * m.kv_heads * m.head_dim * b


def pipeline_prefill_time(cluster: Cluster, layout: Layout, n_seqs: float) -> float:
    """One batch through every stage and hop in order."""
    last = layout.pp - 1
    stages = sum(
        prefill_stage_time(cluster, s, stage_hardware(cluster, s), n_seqs, i == last)
        for i, s in enumerate(layout.stages)
    )
    hops = sum(hop_time(cluster, a, b, n_seqs * PROMPT) for a, b in pairwise(layout.stages))
    return stages + hops


@pytest.mark.parametrize("model_key", MODELS)
@pytest.mark.parametrize("gpu_key", GPUS)
def test_times_never_beat_the_roofline(gpu_key, model_key):
    cluster = make_cluster(gpu_key, model_key)
    for name, layout in layouts(cluster.model.layers).items():
        flops_peak, bandwidth = sum_peak(cluster, layout)
        for n_seqs in (1, 8):
            t = pipeline_prefill_time(cluster, layout, n_seqs)
            assert math.isfinite(t) and t > 0, name
            assert t >= prefill_flops(cluster, n_seqs, PROMPT) / flops_peak, (name, n_seqs)
        for batch, context in ((1, 1), (1, 4096), (64, 1280), (512, 2048)):
            step = decode_step_time(cluster, layout, batch, context)
            assert math.isfinite(step) and step > 0, name
            assert step >= decode_bytes(cluster, batch, context) / bandwidth, (name, batch, context)
            m = cluster.model
            assert step >= batch * 2 * m.layers * m.params_per_layer / flops_peak, (name, batch)


@pytest.mark.parametrize("model_key", MODELS)
@pytest.mark.parametrize("gpu_key", GPUS)
def test_replica_capacities_are_positive_finite_and_physical(gpu_key, model_key):
    """With memory to spare every layout fits; capacities stay under the roofline of the GPUs used."""
    cluster = make_cluster(gpu_key, model_key, huge=True)
    m = cluster.model
    for name, layout in layouts(m.layers).items():
        flops_peak, bandwidth = sum_peak(cluster, layout)
        p = prefill_perf(cluster, layout)
        assert p is not None, name
        for value in (p.capacity_rps, p.latency_s, p.kv_tokens):
            assert math.isfinite(value) and value > 0, name
        assert p.latency_s >= prefill_flops(cluster, 1, PROMPT) / flops_peak
        assert p.capacity_rps <= flops_peak / prefill_flops(cluster, 1, PROMPT) * (1 + 1e-9)
        d = decode_perf(cluster, layout)
        assert d is not None, name
        for value in (d.capacity_rps, d.tpot_s, d.kv_tokens):
            assert math.isfinite(value) and value > 0, name
        assert 1 <= d.batch <= 512
        tokens_per_s = d.capacity_rps * cluster.workload.decode_tokens
        assert tokens_per_s <= flops_peak / (2 * m.layers * m.params_per_layer) * (1 + 1e-9)
        assert d.tpot_s >= decode_bytes(cluster, d.batch, PROMPT) / bandwidth


@pytest.mark.parametrize("model_key", MODELS)
def test_kv_transfer_never_beats_the_link(model_key):
    cluster = make_cluster("H100-SXM", model_key, huge=True)
    lay = layouts(cluster.model.layers)
    kv = kv_bytes_per_request(cluster)
    for p_name, d_name in (("1 GPU", "PP=2"), ("TP=2", "TP=2×PP=2")):
        prefill, decode = lay[p_name], lay[d_name]
        seconds = kv_transfer_time(cluster, prefill, decode)
        assert math.isfinite(seconds) and seconds > 0
        # the share of layers decode holds on the other node crosses the 100 Gbit/s network
        remote = sum(s.layers for s in decode.stages if s.gpus[0].startswith("n1")) / cluster.model.layers
        assert seconds >= kv * remote / NETWORK.bandwidth
    same_node = kv_transfer_time(cluster, lay["1 GPU"], Layout((Stage(("n0/1",), 0, cluster.model.layers),)))
    assert same_node >= kv / CATALOG.link("nvlink4").bandwidth


# Reference KV sizes at 2 bytes per value: 2 (K and V) × kv_heads × head_dim × layers × 2.
KV_BYTES_PER_TOKEN = {
    "llama-2-7b": 524_288,  # MHA, 32 layers: 512 KiB
    "llama-2-13b": 819_200,
    "llama-2-70b": 327_680,  # GQA 8 KV heads, 80 layers: 320 KiB
    "llama-3.1-8b": 131_072,  # 128 KiB
    "llama-3.1-70b": 327_680,
    "qwen2.5-7b": 57_344,
    "qwen2.5-72b": 327_680,
    "opt-30b": 1_376_256,
    "mistral-7b": 131_072,
}


@pytest.mark.parametrize(("model_key", "expected"), sorted(KV_BYTES_PER_TOKEN.items()))
def test_kv_bytes_per_token_matches_reference(model_key, expected):
    cluster = make_cluster("H100-SXM", model_key)
    assert kv_bytes_per_token_layer(cluster) * cluster.model.layers == expected
    assert kv_bytes_per_request(cluster) == expected * PROMPT


# ----------------------------------------------------------------------------- monotonicity and primitives


def test_more_work_takes_longer():
    cluster = make_cluster("A100-80G", "llama-2-13b", huge=True)
    layout = layouts(cluster.model.layers)["TP=2"]
    steps = [decode_step_time(cluster, layout, b, 2048) for b in (1, 8, 64, 256, 512)]
    assert steps == sorted(steps)
    prefill = [pipeline_prefill_time(cluster, layout, n) for n in (1, 2, 8)]
    assert prefill == sorted(prefill) and prefill[0] < prefill[-1]


def test_tensor_parallelism_speeds_up_prefill():
    cluster = make_cluster("H100-SXM", "llama-2-70b", huge=True)
    lay = layouts(cluster.model.layers)
    assert pipeline_prefill_time(cluster, lay["TP=2"], 8) < pipeline_prefill_time(cluster, lay["1 GPU"], 8)


def test_ring_allreduce_of_uncalibrated_links():
    assert ring_seconds(1e9, 1, 1e9, 1e-6) == 0.0
    assert ring_seconds(1e9, 4, 1e9, 0.0) == pytest.approx(2 * 3 / 4)
    assert ring_seconds(0.0, 8, 1e9, 2e-6) == pytest.approx(14 * 2e-6)


def test_hop_without_a_link_is_infinite():
    cluster = dataclasses.replace(make_cluster("L40", "llama-3.1-8b"), network=Network())
    a, b = Stage(("n0/0",), 0, 16), Stage(("n1/0",), 16, 32)
    assert hop_time(cluster, a, b, 100) == math.inf


def test_memory_shrinks_with_tp_and_weights_must_fit():
    cluster = make_cluster("A100-80G", "llama-2-70b")  # 138 GB of weights
    lay = layouts(cluster.model.layers)
    assert kv_capacity_tokens(cluster, lay["1 GPU"], 8192) < 0
    assert prefill_perf(cluster, lay["1 GPU"]) is None and decode_perf(cluster, lay["1 GPU"]) is None
    assert kv_capacity_tokens(cluster, lay["TP=2×PP=2"], 8192) > kv_capacity_tokens(cluster, lay["TP=2"], 8192)
    assert decode_perf(cluster, lay["TP=2×PP=2"]) is not None


def test_tpot_slo_caps_the_batch():
    cluster = make_cluster("A100-80G", "llama-3.1-8b")
    layout = layouts(cluster.model.layers)["1 GPU"]
    free = decode_perf(cluster, layout)
    assert free is not None
    slo = free.tpot_s / 2
    capped = decode_perf(cluster, layout, tpot_slo=slo)
    assert capped is not None and capped.tpot_s <= slo and capped.batch < free.batch
    assert decode_perf(cluster, layout, tpot_slo=1e-6) is None


@pytest.mark.parametrize(
    ("layers", "weights"),
    [(80, [1.0, 1.0]), (80, [3.0, 1.0]), (32, [1.0, 1.0, 1.0]), (5, [100.0, 1.0, 1.0, 1.0, 1.0]), (4, [1.0] * 4)],
)
def test_split_layers_follows_stage_speed(layers, weights):
    """Uncapped, the min-max split gives each stage ≥ 1 layer and about its speed's share."""
    sizes = split_layers(layers, [1.0 / w for w in weights], [layers] * len(weights))
    assert sizes is not None and sum(sizes) == layers and min(sizes) >= 1
    shares = [w / sum(weights) * layers for w in weights]
    assert all(abs(s - share) <= max(1.0, layers / 10) or s == 1 for s, share in zip(sizes, shares, strict=True))


def test_split_layers_respects_memory_caps_and_refuses_the_impossible():
    assert split_layers(80, [1.0, 1.0], [30, 80]) == [30, 50]  # the capped stage gets no more than fits
    assert split_layers(80, [1.0, 1.0], [30, 40]) is None  # 70 layers of room for 80
    assert split_layers(2, [1.0, 1.0, 1.0], [2, 2, 2]) is None  # more stages than layers


def test_check_model_fits(tiny_cluster, catalog):
    check_model_fits(tiny_cluster)
    too_big = dataclasses.replace(tiny_cluster, model=catalog.model("llama-3.1-405b"))
    with pytest.raises(InfeasibleError, match=r"model llama-3.1-405b needs \d+\.\d GB"):
        check_model_fits(too_big)
