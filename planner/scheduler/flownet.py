"""The flow network of replicas and hubs as a fixed, numbered list of arcs: what both solvers read.

Node 0 is the source, node 1 the sink; every replica or hub X gets an in-node and an out-node
(X_in = index[X], X_out = index[X] + 1) joined by an arc carrying its capacity. Arcs are built in
sorted order of the ids, so two runs number everything the same way (determinism). scipy's max-flow
(planner.scheduler.maxflow) and the linear program with side loads (planner.scheduler.lpflow) both
take this list, so they solve the same network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SOURCE, SINK = 0, 1


@dataclass(frozen=True)
class Network:
    """The arcs of the network in a fixed order: (tail, head, capacity, kind), nodes numbered from 2."""

    ids: list[str]
    index: dict[str, int]  # replica or hub id → its in-node (its out-node is index + 1)
    hubs: Mapping[str, float]
    arcs: list[tuple[int, int, float, str]]
    nodes: int
    total: float  # the largest flow any cut allows through the replicas: scales the integer capacities

    @classmethod
    def of(
        cls,
        prefill: Mapping[str, float],
        decode: Mapping[str, float],
        kv: Mapping[tuple[str, str], float],
        colocated: Mapping[str, float],
        hubs: Mapping[str, float],
        hub_arcs: Sequence[tuple[str, str]],
    ) -> Network:
        ids = sorted(prefill) + sorted(decode) + sorted(colocated) + sorted(hubs)
        index = {rid: 2 + 2 * i for i, rid in enumerate(ids)}  # X_in = index, X_out = index + 1
        served = sum(colocated.values())
        total = max(sum(prefill.values()) + served, sum(decode.values()) + served, 1e-12)
        # (tail, head, capacity, kind): source/sink arcs carry the kind of the replica they guard.
        arcs: list[tuple[int, int, float, str]] = []
        for kind, replicas in (("prefill", prefill), ("decode", decode), ("colocated", colocated)):
            for rid in sorted(replicas):
                cap, node = replicas[rid], index[rid]
                if kind != "decode":
                    arcs.append((SOURCE, node, cap, kind))
                arcs.append((node, node + 1, cap, kind))
                if kind != "prefill":
                    arcs.append((node + 1, SINK, cap, kind))
        for p, d in sorted(kv):
            if p in prefill and d in decode and kv[(p, d)] > 0:
                arcs.append((index[p] + 1, index[d], kv[(p, d)], "kv_transfer"))
        for hub in sorted(hubs):
            arcs.append((index[hub], index[hub] + 1, hubs[hub], "kv_transfer"))
        for tail, head in sorted(set(hub_arcs)):
            arcs.append((index[tail] + 1, index[head], math.inf, "link"))
        return cls(ids, index, hubs, arcs, 2 + 2 * len(ids), total)
