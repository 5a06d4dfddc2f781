"""The fastest split of a prefill pipeline's layers, from the cost model's own stage times.

A prefill pipeline's period is its slowest stage or PP hop, and the hops do not depend on the split,
so the best split minimises max_i T_i(n_i) with Σ n_i = layers, n_i ≥ 1, where T_i(n) is stage i's
time per batch with n layers (costs.replica.prefill_stage_time: the last stage also runs the LM head)
and n_i at most what its memory holds. Each T_i grows with n, so for a bound T every stage takes the
most layers it can within T; binary search over the values T_i(n) gives the smallest T that holds all
layers, then the surplus comes off the stages that are slowest at their count. O(S·L) cost-model
calls, O(S·L log(S·L)) otherwise. A linear proxy (layers × a per-layer cost) is off by the LM head
and the per-stage overheads, which cost the search whole layers on small pipelines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from planner.costs.layout import Stage
from planner.costs.replica import prefill_batch_seqs, prefill_stage_time, stage_hardware
from planner.inputs.problem import Cluster


def prefill_stage_times(
    cluster: Cluster, stage_gpus: Sequence[tuple[str, ...]], caps: Sequence[int]
) -> list[np.ndarray]:
    """times[i][n]: stage i's seconds per full batch with n layers (inf for n = 0 or beyond its cap)."""
    n_seqs = prefill_batch_seqs(cluster)
    layers, last = cluster.model.layers, len(stage_gpus) - 1
    tables = []
    for i, (gpus, cap) in enumerate(zip(stage_gpus, caps)):
        hw = stage_hardware(cluster, Stage(tuple(gpus), 0, 1))
        row = np.full(layers + 1, math.inf)
        for n in range(1, min(cap, layers) + 1):
            row[n] = prefill_stage_time(cluster, Stage(tuple(gpus), 0, n), hw, n_seqs, i == last)
        tables.append(row)
    return tables


def min_max_split(times: Sequence[np.ndarray], layers: int) -> list[int] | None:
    """Layers per stage minimising the slowest stage (module docstring); None when they cannot fit."""
    stages = len(times)
    if stages > layers:
        return None
    candidates = np.unique(np.concatenate([t[np.isfinite(t)] for t in times]))

    def counts(bound: float) -> list[int]:
        return [int(np.searchsorted(t[1:], bound * (1 + 1e-12), side="right")) for t in times]

    if not len(candidates) or sum(counts(float(candidates[-1]))) < layers or min(counts(float(candidates[-1]))) < 1:
        return None
    low, high = 0, len(candidates) - 1
    while low < high:
        mid = (low + high) // 2
        found = counts(float(candidates[mid]))
        if sum(found) >= layers and min(found) >= 1:
            high = mid
        else:
            low = mid + 1
    result = counts(float(candidates[low]))
    for _ in range(sum(result) - layers):  # trim the surplus where the stage is slowest at its count
        slowest = max((i for i in range(stages) if result[i] > 1), key=lambda i: (times[i][result[i]], -i))
        result[slowest] -= 1
    return result
