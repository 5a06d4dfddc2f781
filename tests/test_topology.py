"""The resolved network: rules + overrides with O(1) pair look-ups, lazy dense matrices, reachability.

Oracles: the all-pairs link table the planner used to build (written out here, independently),
and networkx connected components over it.
"""

from __future__ import annotations

import tracemalloc
from itertools import combinations

import networkx as nx
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planner.errors import InputError
from planner.inputs.cluster import load_cluster

GBPS = 1e9 / 8


def write_cluster(path, nodes: list[dict], network: dict) -> object:
    doc = {"model": "llama-3.1-8b", "workload": {"prompt_tokens": 512, "output_tokens": 64}, "nodes": nodes,
           "network": network}  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    return path


def all_pairs(nodes: list[dict], network: dict) -> dict[tuple[str, str], tuple[float, float]]:
    """Oracle: every pair's (bandwidth Gbit/s, latency µs) as the README defines it."""

    def parse(link: object) -> tuple[float, float] | None:
        if link is None:
            return None
        if isinstance(link, str):
            link = {"bandwidth": link}
        return float(link["bandwidth"].removesuffix("Gbps")), float(link.get("latency", "10us").removesuffix("us"))

    default, cross = parse(network.get("default")), parse(network.get("cross_zone"))
    pairs = {}
    for a, b in combinations(nodes, 2):
        same = a.get("zone", "default") == b.get("zone", "default")
        link = default if same else (cross or default)
        if link is not None:
            pairs[tuple(sorted((a["name"], b["name"])))] = link
    for entry in network.get("links", []):
        pairs[tuple(sorted(entry["between"]))] = parse(entry)
    return pairs


@st.composite
def networks(draw: st.DrawFn) -> tuple[list[dict], dict]:
    n = draw(st.integers(2, 7))
    nodes = [
        {"name": f"n{i}", "gpu": "L40", "count": 1, "nic": f"{draw(st.sampled_from((50, 100, 400)))}Gbps",
         "zone": draw(st.sampled_from(("x", "y", "z")))}
        for i in range(n)
    ]  # fmt: skip
    link = st.one_of(st.none(), st.sampled_from(("25Gbps", {"bandwidth": "200Gbps", "latency": "3us"})))
    network = {k: v for k, v in (("default", draw(link)), ("cross_zone", draw(link))) if v is not None}
    pairs = st.lists(st.sampled_from(list(combinations(range(n), 2))), max_size=4, unique=True)
    network["links"] = [{"between": [f"n{a}", f"n{b}"], "bandwidth": "75Gbps"} for a, b in draw(pairs)]
    return nodes, network


@settings(max_examples=60, deadline=None)
@given(networks())
def test_links_and_reachability_match_the_all_pairs_oracle(tmp_path_factory, catalog, drawn):
    nodes, network = drawn
    path = write_cluster(tmp_path_factory.mktemp("net") / "c.yaml", nodes, network)
    pairs = all_pairs(nodes, network)
    graph = nx.Graph(list(pairs))
    graph.add_nodes_from(n["name"] for n in nodes)
    components = sorted(nx.connected_components(graph), key=lambda c: (-len(c), min(c)))
    isolated = sorted(name for c in components[1:] for name in c)
    if isolated:
        with pytest.raises(InputError, match="no network path") as info:
            load_cluster(path, catalog)
        assert ", ".join(isolated) in str(info.value)
        return
    cluster = load_cluster(path, catalog)
    nic = {n["name"]: float(n["nic"].removesuffix("Gbps")) for n in nodes}
    for a, b in combinations(sorted(nic), 2):
        expected = pairs.get((a, b))
        want_bw = min(expected[0], nic[a], nic[b]) * GBPS if expected else 0.0
        assert cluster.node_bandwidth(a, b) == pytest.approx(want_bw)
        assert cluster.node_bandwidth(b, a) == pytest.approx(want_bw)
        assert cluster.node_latency(a, b) == (pytest.approx(expected[1] * 1e-6) if expected else np.inf)
        i, j = cluster.node_index[a], cluster.node_index[b]
        assert cluster.bandwidth_matrix[i, j] == cluster.bandwidth_matrix[j, i] == pytest.approx(want_bw)
    for node in cluster.nodes:
        i = cluster.node_index[node.name]
        intra = node.intra_link.bandwidth
        assert cluster.bandwidth_matrix[i, i] == intra == cluster.node_bandwidth(node.name, node.name)


def test_cross_zone_alone_connects_zones_but_not_a_single_zone(write_yaml, catalog):
    nodes = [{"name": f"n{i}", "gpu": "L40", "count": 1, "nic": "100Gbps", "zone": z} for i, z in enumerate("aab")]
    cluster = load_cluster(write_cluster(write_yaml("", "c.yaml"), nodes, {"cross_zone": "10Gbps"}), catalog)
    assert cluster.node_bandwidth("n0", "n1") == 0.0  # same zone: no rule, but both reach n2
    assert cluster.node_bandwidth("n0", "n2") == pytest.approx(10 * GBPS)
    one_zone = [{**n, "zone": "a"} for n in nodes]
    with pytest.raises(InputError, match="node\\(s\\) n1, n2 have no network path"):
        load_cluster(write_cluster(write_yaml("", "d.yaml"), one_zone, {"cross_zone": "10Gbps"}), catalog)


def test_resolving_many_nodes_never_builds_pairs(tmp_path, catalog):
    """3,000 nodes (4.5 M pairs) resolve and check reachability in O(nodes) memory (~15 MB traced; the old
    all-pairs table took ~1 GB); no dense matrix is made."""
    nodes = [{"name": f"n{i}", "gpu": "L40", "count": 1, "nic": "100Gbps", "zone": f"z{i % 3}"} for i in range(3000)]
    network = {"default": "100Gbps", "cross_zone": "10Gbps", "links": [{"between": ["n0", "n1"], "bandwidth": "1Gbps"}]}
    path = write_cluster(tmp_path / "big.yaml", nodes, network)
    tracemalloc.start()
    try:
        cluster = load_cluster(path, catalog)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    assert "bandwidth_matrix" not in vars(cluster)
    assert len(cluster.network.overrides) == 1
    assert cluster.node_bandwidth("n0", "n1") == pytest.approx(GBPS)
    assert cluster.node_bandwidth("n3", "n4") == pytest.approx(10 * GBPS)
    assert cluster.node_bandwidth("n3", "n6") == pytest.approx(100 * GBPS)
