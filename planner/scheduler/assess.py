"""A replica's standalone performance in a role, and what the links between two replicas carry.

Why here, between the cost model and the search: every phase of the scheduler, the plan assembly and
the reference planners score replicas the same way, so a plan's figures and the search's scores agree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

from planner.costs.chunked import colocated_perf
from planner.costs.layout import Layout
from planner.costs.replica import DEFAULT_BATCHED_TOKENS, decode_perf, prefill_perf
from planner.costs.slo import decode_goodput, prefill_within_slo
from planner.inputs.problem import Cluster
from planner.scheduler.kvload import route_traffic, traffic_capacity
from planner.scheduler.launchability import node_of, pair_allowed
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
    capacity_rps: float  # saturated
    latency_s: float
    engine: EngineLimits
    goodput_rps: float | None = None  # within the cluster's SLO under Poisson load (None without an SLO)
    ttft_s: float | None = None  # colocated: a mean prompt alone (its prefill chunks' steps)

    @cached_property
    def id(self) -> str:
        return replica_id(self.role, self.layout.gpus)

    def rate(self, goodput: bool) -> float:
        """The capacity the max-flow uses: within the SLO (`goodput`) or saturated."""
        return (self.goodput_rps or 0.0) if goodput else self.capacity_rps

    @cached_property
    def nodes(self) -> tuple[str, ...]:
        """The nodes its stages sit on, in pipeline order, each once."""
        return tuple(dict.fromkeys(node_of(g) for g in self.layout.gpus))


def max_model_len(cluster: Cluster) -> int:
    """Smallest power of two that holds a long request (p99.9 prompt + output), capped by the model."""
    need = cluster.workload.prompt.upper + cluster.workload.output.upper
    return min(cluster.model.max_position_embeddings, 2 ** math.ceil(math.log2(max(need, 2))))


def assess(cluster: Cluster, role: Role, layout: Layout) -> Assessment | None:
    """Performance of one replica in one role, or None when the model (and its KV working set) does not fit.

    Saturated capacity from planner.costs.replica (prefill, decode) and planner.costs.chunked (a colocated
    engine's steps carry decode tokens and a prefill chunk, so prefill stretches the decode steps); with
    an SLO also the capacity within it under Poisson load (planner.costs.slo, planner.costs.chunked) — 0
    when the replica cannot meet the SLO at all (it still runs; the search does not deploy it).
    """
    util = cluster.memory_utilization
    slo = cluster.slo
    if role == "prefill":
        found = prefill_within_slo(cluster, layout, slo) if slo is not None else None
        p, goodput = found if found is not None else (prefill_perf(cluster, layout), None)
        if p is None:
            return None
        # The capacity assumes a full pipeline: PP micro-batches of batch_seqs in flight. vLLM caps the running
        # sequences of all of them at max_num_seqs, so it must admit PP × batch_seqs (launchability rule).
        seqs = p.batch_seqs * layout.pp
        engine = EngineLimits(seqs, p.max_num_batched_tokens, max_model_len(cluster), util)
        return Assessment(role, layout, p.capacity_rps, p.latency_s, engine, goodput)
    if role == "decode":
        d = decode_perf(cluster, layout, cluster.slo_tpot)
        goodput = decode_goodput(cluster, d, slo) if d is not None and slo is not None else None
        if d is None and slo is not None:  # no batch meets the TPOT SLO: it runs, but serves nothing within it
            d, goodput = decode_perf(cluster, layout), 0.0
        if d is None:
            return None
        engine = EngineLimits(d.batch, DEFAULT_BATCHED_TOKENS, max_model_len(cluster), util)
        return Assessment(role, layout, d.capacity_rps, d.tpot_s, engine, goodput)
    c = colocated_perf(cluster, layout, slo)
    if c is None and slo is not None:  # likewise: no token budget and batch meet the SLO
        c = colocated_perf(cluster, layout, None)
        c = dataclasses.replace(c, goodput_rps=0.0) if c is not None else None
    if c is None:
        return None
    engine = EngineLimits(c.batch, c.max_num_batched_tokens, max_model_len(cluster), util)
    return Assessment(role, layout, c.capacity_rps, c.tpot_s, engine, c.goodput_rps, c.ttft_s)


def route_capacity(cluster: Cluster, prefill: Assessment, decode: Assessment, launchable: bool) -> float:
    """Requests/s of KV caches the links between two replicas carry on their own, each NIC and link
    counted once (planner.scheduler.kvload); 0 when the connector cannot join them
    (launchability.pair_allowed: TP sizes, KV-head replication)."""
    if launchable and not pair_allowed(prefill.layout.tp, decode.layout.tp, cluster.model.kv_heads):
        return 0.0
    return traffic_capacity(cluster, route_traffic(cluster, prefill.layout, decode.layout))
