"""costs.kvtransfer, by hand: KV bytes per request, intra-node copies over min(tp_p, tp_d) parallel streams, node pairs
of a pipeline shipping in parallel, the time a transfer takes. Bandwidths come from the catalogue's links."""

from __future__ import annotations

import math

import pytest
from builders import catalog, cluster, gbps, layout, node
from oracles import kv_bytes_per_request as physical_bytes

from planner.costs.kvtransfer import kv_bytes_per_request, kv_transfer_capacity, kv_transfer_loads, kv_transfer_time

PROMPT = 1024


@pytest.fixture(scope="module")
def c():
    """Two 8×A100 nodes (NVLink 3 inside), 200 Gbit/s NICs, a 100 Gbit/s wire, 1 ms between them."""
    return cluster(node("a", "A100-80G", 8), node("b", "A100-80G", 8), network=100, latency="1ms", prompt=PROMPT)


def one(c, *gpus):
    return layout(c.model.layers, gpus)


def gpus(name: str, first: int, n: int) -> list[str]:
    return [f"{name}/{i}" for i in range(first, first + n)]


def test_bytes_per_request_is_the_prompts_k_and_v_in_every_layer(c) -> None:
    m = c.model  # llama-3.1-8b: 32 layers, 8 KV heads of 128, fp16
    assert kv_bytes_per_request(c) == pytest.approx(PROMPT * m.layers * 2 * m.kv_heads * m.head_dim * 2)
    assert kv_bytes_per_request(c) == pytest.approx(physical_bytes(c))


@pytest.mark.parametrize(
    ("tp_p", "tp_d", "streams"), [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 2), (4, 2, 2), (2, 4, 2)]
)
def test_inside_a_node_min_tp_gpu_pairs_copy_in_parallel(c, tp_p, tp_d, streams) -> None:
    nvlink = catalog().link("nvlink3").bandwidth
    prefill, decode = one(c, *gpus("a", 0, tp_p)), one(c, *gpus("a", 4, tp_d))
    assert kv_transfer_capacity(c, prefill, decode) == pytest.approx(nvlink * streams / physical_bytes(c))
    assert kv_transfer_loads(c, prefill, decode) == {
        ("a", "a"): (pytest.approx(physical_bytes(c) / PROMPT), nvlink * streams)
    }


@pytest.mark.parametrize(("tp_p", "tp_d"), [(1, 1), (2, 2), (4, 2)])
def test_between_nodes_one_wire_carries_it_whatever_the_tp(c, tp_p, tp_d) -> None:
    """The pair's bandwidth is min(NICs, wire) = 100 Gbit/s; TP does not multiply it."""
    prefill, decode = one(c, *gpus("a", 0, tp_p)), one(c, *gpus("b", 0, tp_d))
    assert kv_transfer_capacity(c, prefill, decode) == pytest.approx(gbps(100) / physical_bytes(c))
    seconds = physical_bytes(c) / gbps(100) + 1e-3
    assert kv_transfer_time(c, prefill, decode) == pytest.approx(seconds)


def test_a_pipelines_stages_ship_over_their_own_node_pairs_in_parallel(c) -> None:
    """Prefill stages a/0 (layers 0–10) and b/0 (10–32) → decode on a/1: 10 layers over NVLink and 22 over the
    network at the same time; the network part takes longer and decides."""
    prefill = layout(c.model.layers, ["a/0"], ["b/0"], split=[10])
    decode = one(c, "a/1")
    per_layer = physical_bytes(c) / c.model.layers
    nvlink = catalog().link("nvlink3").bandwidth
    loads = kv_transfer_loads(c, prefill, decode)
    assert set(loads) == {("a", "a"), ("b", "a")}
    assert loads[("a", "a")][0] * PROMPT == pytest.approx(10 * per_layer)
    assert loads[("b", "a")][0] * PROMPT == pytest.approx(22 * per_layer)
    seconds = max(10 * per_layer / nvlink, 22 * per_layer / gbps(100))
    assert kv_transfer_capacity(c, prefill, decode) == pytest.approx(1 / seconds)
    assert kv_transfer_time(c, prefill, decode) == pytest.approx(
        max(10 * per_layer / nvlink + catalog().link("nvlink3").latency, 22 * per_layer / gbps(100) + 1e-3)
    )


def test_only_stage_pairs_holding_the_same_layers_transfer(c) -> None:
    """Both replicas pipelined over nodes a and b with the same split: layers 0–16 stay in a, 16–32 in b, nothing
    crosses the network, so the network's 1 ms latency is not paid (connector `none` allows decode PP > 1)."""
    prefill = layout(c.model.layers, ["a/0"], ["b/0"])
    decode = layout(c.model.layers, ["a/1"], ["b/1"])
    nvlink = catalog().link("nvlink3")
    loads = kv_transfer_loads(c, prefill, decode)
    assert set(loads) == {("a", "a"), ("b", "b")}
    half = physical_bytes(c) / 2
    assert kv_transfer_capacity(c, prefill, decode) == pytest.approx(nvlink.bandwidth / half)
    assert kv_transfer_time(c, prefill, decode) == pytest.approx(half / nvlink.bandwidth + nvlink.latency)


def test_stage_pairs_on_one_node_pair_share_it(c) -> None:
    """Prefill stages a/0 and a/1 (both on node a) → decode on b/0: the whole KV crosses the one a→b pair."""
    prefill = layout(c.model.layers, ["a/0"], ["a/1"])
    assert kv_transfer_capacity(c, prefill, one(c, "b/0")) == pytest.approx(gbps(100) / physical_bytes(c))


def test_nodes_without_a_link_cannot_transfer() -> None:
    c = cluster(
        node("a", "A100-80G", 1),
        node("b", "A100-80G", 1),
        node("m", "A100-80G", 1),
        network=None,
        links=[("a", "m", 100), ("b", "m", 100)],
    )
    prefill, decode = one(c, "a/0"), one(c, "b/0")
    assert kv_transfer_capacity(c, prefill, decode) == 0.0
    assert kv_transfer_time(c, prefill, decode) == math.inf


@pytest.mark.parametrize(("p_split", "d_split"), [([16], [1]), ([1], [31]), ([10], [11]), ([31], [1])])
def test_every_layer_ships_exactly_once_whatever_the_splits(c, p_split, d_split) -> None:
    """Stage pairs sharing a single layer transfer it too: the loads add up to the whole request's KV."""
    prefill = layout(c.model.layers, ["a/0"], ["b/0"], split=p_split)
    decode = layout(c.model.layers, ["a/1"], ["b/1"], split=d_split)
    loads = kv_transfer_loads(c, prefill, decode)
    assert sum(nbytes for nbytes, _ in loads.values()) * PROMPT == pytest.approx(physical_bytes(c))
