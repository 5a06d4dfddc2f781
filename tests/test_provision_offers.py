"""OFFERS.yaml (planner.provision.offers) and mixes as cluster files (planner.provision.mixes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import EXAMPLES

from planner.errors import InputError
from planner.inputs.cluster import load_cluster
from planner.provision.mixes import cluster_text, describe, mix_cluster, mix_cost
from planner.provision.offers import load_offers

SERVING = """model: llama-3.1-8b
workload: {prompt_tokens: 512, output_tokens: 128}
"""
NETWORK = "network: {default: {bandwidth: 100Gbps, latency: 10us}}\n"
L40 = "  - {gpu: L40, price: $1.9/h, gpus_per_node: 2, max_gpus: 4}\n"


def offers_text(*offers: str, serving: str = SERVING, network: str = NETWORK) -> str:
    return serving + network + "offers:\n" + "".join(offers)


def test_the_example_resolves(catalog) -> None:
    offers = load_offers(EXAMPLES / "offers-runpod.yaml", catalog)
    keys = [o.gpu.key for o in offers.offers]
    assert keys == ["H100-SXM", "A100-80G", "A100-80G", "L40", "L40S", "RTX-A6000"]
    assert [o.max_nodes for o in offers.offers] == [2, 2, 4, 4, 4, 6]
    assert offers.offers[0].node_price == pytest.approx(8 * 4.176)
    # prices from the RunPod column of the catalogue, as the file says
    assert all(o.price_per_gpu_hour == o.gpu.price_per_hour for o in offers.offers)
    assert offers.serving["workload"]["slo"] == {"ttft": "2s", "tpot": "100ms"} and offers.has_slo


def test_a_mix_is_a_valid_cluster_file_whose_nodes_say_what_was_offered(catalog, write_yaml, tmp_path) -> None:
    path = write_yaml(
        offers_text(
            "  - {gpu: l40, price: $1.5/h, gpus_per_node: 2, max_gpus: 4, zone: eu}\n",
            "  - {gpu: L40, price: $1.9/h, gpus_per_node: 4, max_gpus: 8, nic: 200Gbps, interconnect: pcie4}\n",
            "  - {gpu: a100, price: $2.7/h, gpus_per_node: 1, max_gpus: 2}\n",
        ),
        name="offers.yaml",
    )
    offers = load_offers(path, catalog)
    mix = (2, 1, 1)
    where = tmp_path / "out" / "cluster.yaml"
    cluster, text = mix_cluster(offers, mix, where, catalog)
    assert [n.name for n in cluster.nodes] == ["l40-o0-0", "l40-o0-1", "l40-o1-0", "a100-80g-0"]
    assert [n.count for n in cluster.nodes] == [2, 2, 4, 1]
    assert [n.price_per_gpu_hour for n in cluster.nodes] == [1.5, 1.5, 1.9, 2.7]
    assert [n.zone for n in cluster.nodes] == ["eu", "eu", "default", "default"]
    assert cluster.nodes[2].nic == 200e9 / 8 and cluster.nodes[0].nic == 100e9 / 8  # default: network.default's
    assert cluster.total_price_per_hour == pytest.approx(mix_cost(offers, mix)) == 2 * 3.0 + 7.6 + 2.7
    assert describe(offers, mix) == "2×2 L40 + 1×4 L40 + 1×1 A100-80G"
    where.parent.mkdir()
    where.write_text(text, encoding="utf-8")
    loaded = load_cluster(where, catalog)
    assert loaded.sha256 == cluster.sha256 and loaded.source == cluster.source == where
    assert [(n.name, n.count, n.nic, n.price_per_gpu_hour) for n in loaded.nodes] == [
        (n.name, n.count, n.nic, n.price_per_gpu_hour) for n in cluster.nodes
    ]
    assert cluster_text(offers, mix) == text  # deterministic


def test_relative_paths_become_absolute(catalog, tmp_path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,500,100\n")
    serving = "model: llama-3.1-8b\nworkload: {trace: t.csv}\n"
    (source / "offers.yaml").write_text(offers_text(L40, serving=serving))
    offers = load_offers(source / "offers.yaml", catalog)
    where = tmp_path / "deep" / "out" / "cluster.yaml"
    cluster, text = mix_cluster(offers, (2,), where, catalog)
    assert f"trace: {(source / 't.csv').resolve().as_posix()}" in text
    assert cluster.workload.prompt.mean == 500


@pytest.mark.parametrize(
    ("offer", "network", "message"),
    [
        (
            "  - {gpu: L40, price: $1.9/h, gpus_per_node: 2, max_gpus: 5}\n",
            NETWORK,
            "offers[0]: max_gpus 5 is not a multiple of gpus_per_node 2: an offer rents whole nodes",
        ),
        (
            "  - {gpu: L40, price: $1.9/h, gpus_per_node: 1, max_gpus: 65}\n",
            NETWORK,
            "offers[0]: max_gpus 65 is 65 nodes of 1; at most 64 nodes per offer",
        ),
        (
            "  - {gpu: L4O, price: $1.9/h, gpus_per_node: 2, max_gpus: 4}\n",
            NETWORK,
            "offers[0].gpu: unknown GPU type 'L4O'; did you mean 'L4', 'L40', 'L40S'?",
        ),
        (
            "  - {gpu: L40, price: 1.9, gpus_per_node: 2, max_gpus: 4}\n",
            NETWORK,
            "offers[0].price: cannot read 1.9 as a price",
        ),
        (
            "  - {gpu: L40, price: $1.9/h, gpus_per_node: 2, max_gpus: 4, nics: 1Gbps}\n",
            NETWORK,
            "offers[0].nics: Extra inputs are not permitted (did you mean 'nic'?)",
        ),
        (
            "  - {gpu: L40, price: $1.9/h, gpus_per_node: 2, max_gpus: 4, interconnect: nvlink9}\n",
            NETWORK,
            "offers[0].interconnect: unknown link 'nvlink9'",
        ),
        (L40, "", "network: Field required"),
        (L40, "network: {cross_zone: {bandwidth: 1Gbps}}\n", "network: Value error, network.default is required"),
        (
            L40,
            "network:\n  default: {bandwidth: 1Gbps}\n  links: [{between: [a, b], bandwidth: 1Gbps}]\n",
            "network: Value error, links name nodes, and rented nodes have no names yet; use network.default",
        ),
    ],
)
def test_bad_offers_name_file_and_field(catalog, write_yaml, offer, network, message) -> None:
    path = write_yaml(offers_text(offer, network=network), name="offers.yaml")
    with pytest.raises(InputError) as caught:
        load_offers(path, catalog)
    assert f"{path}: {message}".replace("Value error, ", "") in caught.value.render()


def test_serving_errors_name_the_offers_file(catalog, write_yaml) -> None:
    path = write_yaml(offers_text(L40, serving="model: llama-9\nworkload: {prompt_tokens: 1, output_tokens: 1}\n"))
    with pytest.raises(InputError, match=r"offers.yaml: model: unknown model 'llama-9'"):
        load_offers(path.rename(path.with_name("offers.yaml")), catalog)
    a100 = "  - {gpu: A100-80G, price: $1/h, gpus_per_node: 1, max_gpus: 1}\n"
    fp8 = offers_text(a100, serving=SERVING + "dtype: fp8\n")
    with pytest.raises(InputError, match=r"offers\[0\].gpu: A100-80G has no fp8 support"):
        load_offers(write_yaml(fp8), catalog)
    with pytest.raises(InputError, match=r"offers: List should have at least 1 item"):
        load_offers(write_yaml(SERVING + NETWORK + "offers: []\n"), catalog)


def test_shared_pieces_are_the_cluster_files(catalog, write_yaml) -> None:
    """One schema for both files: a workload typo reads the same in either."""
    bad = "model: llama-3.1-8b\nworkload: {prompt_tokens: 512, output_token: 128}\n"
    with pytest.raises(InputError, match=r"workload.output_token: Extra inputs are not permitted"):
        load_offers(write_yaml(offers_text(L40, serving=bad)), catalog)


def test_missing_offers_file(catalog, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_offers(tmp_path / "none.yaml", catalog)
