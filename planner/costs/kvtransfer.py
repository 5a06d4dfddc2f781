"""KV-cache transfer from a prefill to a decode replica: bytes per request, time, link loads, capacity.

Each layer's KV moves from the prefill stage holding it to the decode stage holding it; stage pairs on
different node pairs transfer in parallel, pairs sharing a node pair share its bandwidth. Inside one
node min(tp_p, tp_d) GPU pairs copy in parallel over the intra-node link.
"""

from __future__ import annotations

import math

from planner.costs.layout import Layout
from planner.costs.memory import kv_bytes_per_token_layer
from planner.inputs.problem import Cluster


def kv_bytes_per_request(cluster: Cluster) -> float:
    """KV cache a prefill replica ships to decode for one mean prompt (all layers)."""
    return cluster.workload.prompt.mean * cluster.model.layers * kv_bytes_per_token_layer(cluster)


def kv_transfer_time(cluster: Cluster, prefill: Layout, decode: Layout) -> float:
    """Seconds to ship one mean request's KV cache from a prefill to a decode replica (see module docstring)."""
    worst = 0.0
    for (node_p, node_d), (bytes_per_token, bandwidth) in kv_transfer_loads(cluster, prefill, decode).items():
        if bandwidth <= 0:
            return math.inf
        nbytes = cluster.workload.prompt.mean * bytes_per_token
        worst = max(worst, nbytes / bandwidth + cluster.node_latency(node_p, node_d))
    return worst


def kv_transfer_loads(cluster: Cluster, prefill: Layout, decode: Layout) -> dict[tuple[str, str], tuple[float, float]]:
    """(prefill node, decode node) → (KV bytes per prompt token crossing it, its bandwidth in bytes/s).

    Inside one node min(tp_p, tp_d) GPU pairs copy in parallel, multiplying the intra link's bandwidth.
    """
    per_layer = kv_bytes_per_token_layer(cluster)
    load: dict[tuple[str, str], float] = {}
    streams: dict[tuple[str, str], int] = {}
    for p in prefill.stages:
        node_p = cluster.gpu_by_id[p.gpus[0]].node
        for d in decode.stages:
            overlap = min(p.layer_end, d.layer_end) - max(p.layer_start, d.layer_start)
            if overlap <= 0:
                continue
            node_d = cluster.gpu_by_id[d.gpus[0]].node
            key = (node_p, node_d)
            load[key] = load.get(key, 0.0) + overlap * per_layer
            streams[key] = max(streams.get(key, 1), min(p.tp, d.tp))
    return {
        key: (nbytes, cluster.node_bandwidth(*key) * (streams[key] if key[0] == key[1] else 1))
        for key, nbytes in load.items()
    }


def kv_transfer_capacity(cluster: Cluster, prefill: Layout, decode: Layout) -> float:
    """Requests/s whose KV caches the links between the two replicas can carry.

    Bandwidth-bound: concurrent transfers overlap their latency, so latency counts in TTFT
    (kv_transfer_time), not here; this is also what the shared hubs of planner.scheduler.kvnet assume.
    """
    worst = 0.0
    for bytes_per_token, bandwidth in kv_transfer_loads(cluster, prefill, decode).values():
        if bandwidth <= 0:
            return 0.0
        worst = max(worst, cluster.workload.prompt.mean * bytes_per_token / bandwidth)
    return 1.0 / worst if worst > 0 else 0.0
