"""The simulator's clock rates, all taken from planner.costs (no second cost model here).

Why a wrapper: the cost model is pure but not free, and the simulator asks the same
questions thousands of times (same batch shape, same decode batch), so answers are memoised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.costs.chunked import mixed_step_time
from planner.costs.kvtransfer import kv_transfer_loads
from planner.costs.layout import Layout
from planner.costs.replica import decode_step_time, prefill_batch_time
from planner.inputs.problem import Cluster


@dataclass(eq=False)
class ReplicaTiming:
    cluster: Cluster
    layout: Layout
    _prefill: dict[tuple[int, int, int], tuple[float, float]] = field(default_factory=dict)
    _decode: dict[tuple[int, int], float] = field(default_factory=dict)
    _mixed: dict[tuple[int, int, int, int, int], float] = field(default_factory=dict)

    def prefill(self, prompts: list[int]) -> tuple[float, float]:
        """(period, latency) of a prefill batch; depends on the prompts only via n, Σs, Σs²."""
        key = (len(prompts), sum(prompts), sum(p * p for p in prompts))
        hit = self._prefill.get(key)
        if hit is None:
            hit = self._prefill[key] = prefill_batch_time(self.cluster, self.layout, prompts)
        return hit

    def decode_step(self, batch: int, context: int) -> float:
        """One decode step of `batch` sequences at mean context `context` (whole tokens)."""
        key = (batch, context)
        hit = self._decode.get(key)
        if hit is None:
            hit = self._decode[key] = decode_step_time(self.cluster, self.layout, batch, context)
        return hit

    def mixed_step(self, decodes: int, context: int, chunk_tokens: int, chunk_squares: int, chunk_seqs: int) -> float:
        """One step of `decodes` decode tokens and prefill chunks of `chunk_tokens` tokens in all
        (planner.costs.chunked.mixed_step_time)."""
        squares = int(float(f"{chunk_squares:.3g}"))  # the attention term to 3 digits: far fewer distinct steps
        key = (decodes, context, chunk_tokens, squares, chunk_seqs)
        hit = self._mixed.get(key)
        if hit is None:
            hit = self._mixed[key] = mixed_step_time(
                self.cluster, self.layout, decodes, context, chunk_tokens, squares, chunk_seqs
            )
        return hit


@dataclass(frozen=True)
class KvPart:
    """One node pair a request's KV crosses from a prefill to a decode replica."""

    key: tuple[str, str]
    bytes_per_token: float
    bandwidth: float
    latency: float


def kv_parts(cluster: Cluster, prefill: Layout, decode: Layout) -> tuple[KvPart, ...]:
    return tuple(
        KvPart(key, per_token, bandwidth, cluster.node_latency(*key))
        for key, (per_token, bandwidth) in sorted(kv_transfer_loads(cluster, prefill, decode).items())
    )
