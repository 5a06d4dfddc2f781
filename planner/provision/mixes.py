"""A mix — how many nodes of each offer to rent — as a cluster file and as the resolved Cluster.

Why one function makes both: provision plans each candidate on the Cluster of exactly the text it
would write, at the path it would write it to, so the plan it writes is byte for byte the plan
`hexplan solve OUTDIR/cluster.yaml` makes (same seed and options).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from planner.inputs.catalog import Catalog
from planner.inputs.cluster import cluster_from_data
from planner.inputs.problem import Cluster
from planner.provision.offers import Offer, Offers
from planner.yamlio import dump_yaml

Mix = tuple[int, ...]  # nodes rented per offer, in the offers file's order


def node_prefix(offers: Sequence[Offer], offer: Offer) -> str:
    """Node names: the GPU type in lower case, plus the offer's index when two offers rent that type."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", offer.gpu.key.lower()).strip("-.") or "gpu"
    shared = sum(o.gpu.key == offer.gpu.key for o in offers) > 1
    return f"{base}-o{offer.index}" if shared else base


def mix_cost(offers: Offers, mix: Mix) -> float:
    """$ per hour of renting the mix."""
    return sum(offer.node_price * nodes for offer, nodes in zip(offers.offers, mix))


def describe(offers: Offers, mix: Mix) -> str:
    """'1×8 H100-SXM + 2×4 L40' (nodes × GPUs per node, GPU type)."""
    parts = [f"{n}×{o.gpus_per_node} {o.gpu.key}" for o, n in zip(offers.offers, mix) if n]
    return " + ".join(parts) or "nothing"


def cluster_data(offers: Offers, mix: Mix) -> dict:
    """The cluster file of `mix`, as parsed YAML."""
    nodes = []
    for offer, count in zip(offers.offers, mix):
        prefix = node_prefix(offers.offers, offer)
        nodes += [{"name": f"{prefix}-{k}"} | dict(offer.node) for k in range(count)]
    return offers.serving_for() | {"nodes": nodes}


def cluster_text(offers: Offers, mix: Mix) -> str:
    header = (
        f"# Written by `hexplan provision {offers.source.as_posix()}`: {describe(offers, mix)}, "
        f"${mix_cost(offers, mix):.4g}/h.\n"
        "# Prices are the offers file's; model, workload, SLO and network are copied from it.\n"
    )
    return header + dump_yaml(cluster_data(offers, mix))


def mix_cluster(offers: Offers, mix: Mix, where: Path, catalog: Catalog) -> tuple[Cluster, str]:
    """(the Cluster `load_cluster(where)` would return once the text is written there, the text)."""
    text = cluster_text(offers, mix)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return cluster_from_data(cluster_data(offers, mix), where, sha, catalog), text
