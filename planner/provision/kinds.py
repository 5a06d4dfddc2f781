"""The replicas one offer can form, each assessed in each role by the cost model: the cut's raw material.

Sizes: inside a node, every power of two that divides the node's GPU count, and the whole node; across
nodes, 2 … MAX_SPAN whole nodes (vLLM runs the same number of GPUs on every node of a replica). Sizes
inside a node form a divisor chain, so any number of such replicas whose GPUs add up to at most a
multiple of the node size packs into that many nodes — which is what lets the integer program count
GPUs instead of placing replicas. Each (size, role) is assessed once, on a cluster of that offer's nodes
alone, by the scheduler's own layout choice (planner.scheduler.layouts.best_assessment): with an SLO its
goodput (requests/s within the SLO under Poisson load), else its saturated capacity — the rate the
scheduler's max-flow gives that replica (Assessment.rate). Replicas mixing GPU types are not formed
here (the full solve may).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from planner.inputs.catalog import Catalog
from planner.provision.mixes import mix_cluster
from planner.provision.offers import Offer, Offers
from planner.scheduler.layouts import best_assessment
from planner.types import Role

MAX_SPAN = 4  # whole nodes a replica may span in the cut


@dataclass(frozen=True)
class ReplicaKind:
    """A replica of `gpus` GPUs of offer `offer` in `role`, with its capacity (requests/s) and layout."""

    offer: int
    gpus: int
    role: Role
    capacity_rps: float
    tp: int
    pp: int


def replica_sizes(gpus_per_node: int, max_nodes: int) -> list[int]:
    """GPU counts a replica of this offer may have (see the module docstring)."""
    inside = {2**k for k in range(gpus_per_node.bit_length()) if gpus_per_node % 2**k == 0} | {gpus_per_node}
    across = {k * gpus_per_node for k in range(2, min(max_nodes, MAX_SPAN) + 1)}
    return sorted(inside | across)


def offer_kinds(
    offers: Offers, offer: Offer, roles: Sequence[Role], launchable: bool, catalog: Catalog
) -> list[ReplicaKind]:
    """Every (size, role) of one offer that holds the model, with its best layout's capacity."""
    span = min(offer.max_nodes, MAX_SPAN)
    mix = tuple(span if o.index == offer.index else 0 for o in offers.offers)
    cluster, _ = mix_cluster(offers, mix, Path("probe.yaml"), catalog)
    gpus = [slot.id for slot in cluster.gpus]
    kinds = []
    for size in replica_sizes(offer.gpus_per_node, offer.max_nodes):
        for role in roles:
            found = best_assessment(cluster, gpus[:size], role, launchable)
            rate = found.rate(goodput=cluster.slo is not None) if found is not None else 0.0
            if found is not None and rate > 0:
                kinds.append(ReplicaKind(offer.index, size, role, rate, found.layout.tp, found.layout.pp))
    return kinds


def replica_kinds(offers: Offers, roles: Sequence[Role], launchable: bool, catalog: Catalog) -> list[ReplicaKind]:
    """The replica kinds of every offer, in offer, size, role order."""
    return [kind for offer in offers.offers for kind in offer_kinds(offers, offer, roles, launchable, catalog)]
