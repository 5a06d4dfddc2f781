"""A replica's standalone performance in a role, and what the links between two replicas carry.

Why here, between the cost model and the search: every phase of the scheduler, the plan assembly and
the reference planners score replicas the same way, so a plan's figures and the search's scores agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from planner.costs.kvtransfer import kv_transfer_capacity
from planner.costs.layout import Layout
from planner.costs.replica import DEFAULT_BATCHED_TOKENS, decode_perf, prefill_perf
from planner.inputs.problem import Cluster
from planner.scheduler.launchability import pair_allowed
from planner.types import Role, replica_id


@dataclass(frozen=True)
class EngineLimits:
    """The vLLM engine settings a replica is planned with (plan.yaml's `engine`)."""

    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float


@dataclass(frozen=True)
class Assessment:
    """A replica's standalone performance under the cluster's workload."""

    role: Role
    layout: Layout
    capacity_rps: float
    latency_s: float
    engine: EngineLimits

    @cached_property
    def id(self) -> str:
        return replica_id(self.role, self.layout.gpus)


def max_model_len(cluster: Cluster) -> int:
    """Smallest power of two that holds a long request (p99.9 prompt + output), capped by the model."""
    need = cluster.workload.prompt.upper + cluster.workload.output.upper
    return min(cluster.model.max_position_embeddings, 2 ** math.ceil(math.log2(max(need, 2))))


def assess(cluster: Cluster, role: Role, layout: Layout) -> Assessment | None:
    """Performance of one replica in one role, or None when the model (and its KV working set) does not fit.

    A colocated replica time-shares its GPUs: each request costs 1/P of the replica's time in prefill and
    1/D in decode, so capacity = 1 / (1/P + 1/D); at rate c decode steps wait behind prefills c/P of the
    time, so TPOT = step / (1 − c/P), and a TPOT SLO caps c.
    """
    util = cluster.memory_utilization
    if role == "prefill":
        p = prefill_perf(cluster, layout)
        if p is None:
            return None
        # The capacity assumes a full pipeline: PP micro-batches of batch_seqs in flight. vLLM caps the running
        # sequences of all of them at max_num_seqs, so it must admit PP × batch_seqs (launchability rule).
        seqs = p.batch_seqs * layout.pp
        engine = EngineLimits(seqs, p.max_num_batched_tokens, max_model_len(cluster), util)
        return Assessment(role, layout, p.capacity_rps, p.latency_s, engine)
    d = decode_perf(cluster, layout, cluster.slo_tpot)
    if d is None:
        return None
    engine = EngineLimits(d.batch, DEFAULT_BATCHED_TOKENS, max_model_len(cluster), util)
    if role == "decode":
        return Assessment(role, layout, d.capacity_rps, d.tpot_s, engine)
    p = prefill_perf(cluster, layout)
    if p is None:
        return None
    capacity = 1.0 / (1.0 / p.capacity_rps + 1.0 / d.capacity_rps)
    if cluster.slo_tpot is not None:
        capacity = min(capacity, p.capacity_rps * (1.0 - d.tpot_s / cluster.slo_tpot))
        if capacity <= 0:
            return None
    prefill_share = capacity / p.capacity_rps
    return Assessment(role, layout, capacity, d.tpot_s / max(1.0 - prefill_share, 1e-6), engine)


def route_capacity(cluster: Cluster, prefill: Assessment, decode: Assessment, launchable: bool) -> float:
    """Requests/s of KV caches the links between two replicas carry on their own; 0 when the
    connector cannot join them (launchability.pair_allowed: TP sizes, KV-head replication)."""
    if launchable and not pair_allowed(prefill.layout.tp, decode.layout.tp, cluster.model.kv_heads):
        return 0.0
    return kv_transfer_capacity(cluster, prefill.layout, decode.layout)
