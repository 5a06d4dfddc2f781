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

import numpy as np

SOURCE, SINK = 0, 1


@dataclass(frozen=True)
class PairArcs:
    """Many capacitated arcs from one set of hubs to another, as arrays (node pairs of a big cluster):
    arc k runs from hub tails[rows[k]] (its out-node) to hub heads[cols[k]] (its in-node)."""

    tails: Sequence[str]
    heads: Sequence[str]
    rows: np.ndarray
    cols: np.ndarray
    caps: np.ndarray  # requests/s; inf where the arc only connects


@dataclass(frozen=True)
class Network:
    """The arcs of the network in a fixed order, as arrays (tail, head, capacity, kind), nodes from 2."""

    ids: list[str]
    index: dict[str, int]  # replica or hub id → its in-node (its out-node is index + 1)
    hubs: Mapping[str, float]
    tails: np.ndarray
    heads: np.ndarray
    caps: np.ndarray
    kinds: list[str]
    nodes: int
    total: float  # the largest flow any cut allows through the replicas: scales the integer capacities

    @property
    def arcs(self) -> list[tuple[int, int, float, str]]:
        return list(zip(self.tails.tolist(), self.heads.tolist(), self.caps.tolist(), self.kinds))

    @classmethod
    def of(
        cls,
        prefill: Mapping[str, float],
        decode: Mapping[str, float],
        kv: Mapping[tuple[str, str], float],
        colocated: Mapping[str, float],
        hubs: Mapping[str, float],
        hub_arcs: Sequence[tuple[str, str]],
        pairs: PairArcs | None = None,
    ) -> Network:
        """Source/sink arcs carry the kind of the replica they guard; hub arcs are "link" (uncapacitated)
        or, for pair arcs with a capacity, "kv_transfer"."""
        ids = sorted(prefill) + sorted(decode) + sorted(colocated) + sorted(hubs)
        index = {rid: 2 + 2 * i for i, rid in enumerate(ids)}  # X_in = index, X_out = index + 1
        served = sum(colocated.values())
        total = max(sum(prefill.values()) + served, sum(decode.values()) + served, 1e-12)
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
        tails = np.array([a[0] for a in arcs], dtype=np.int64)
        heads = np.array([a[1] for a in arcs], dtype=np.int64)
        caps = np.array([a[2] for a in arcs], dtype=float)
        kinds = [a[3] for a in arcs]
        if pairs is not None and len(pairs.rows):
            out = np.array([index[h] + 1 for h in pairs.tails], dtype=np.int64)
            into = np.array([index[h] for h in pairs.heads], dtype=np.int64)
            tails = np.concatenate([tails, out[pairs.rows]])
            heads = np.concatenate([heads, into[pairs.cols]])
            caps = np.concatenate([caps, pairs.caps])
            kinds = kinds + np.where(np.isinf(pairs.caps), "link", "kv_transfer").tolist()
        return cls(ids, index, hubs, tails, heads, caps, kinds, 2 + 2 * len(ids), total)
