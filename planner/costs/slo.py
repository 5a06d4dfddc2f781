"""A disaggregated replica's capacity within the SLO: the request rate at which, under Poisson arrivals,
at least the SLO's attainment of requests meet it (queueing included, not unloaded latency).

Miss budget: a plan may miss ε = 1 − attainment of requests. A request misses if its TTFT or its TPOT
does, so by the union bound ε_TTFT + ε_TPOT ≤ ε suffices; each SLO that is set gets its share
(TTFT_SHARE of ε for TTFT when both are, all of ε for the only one).

Prefill replica (TTFT = queueing + its batch + KV transfer): the engine batches waiting prompts up to
max_num_batched_tokens; at full batches it serves one mean request every s = period(n)/n seconds. Under load λ
batches hold k̄ = clamp(λ·period(k̄), 1, n) prompts on average (a fixed point; period and latency interpolated
linearly in the prompts between 1 and n). A request waits for the work ahead of it — an M/G/1 queue with
service s and the prompt lengths' variability (planner.costs.queueing) — then goes through the pipeline in a
batch with the prompts that arrived since the last batch formed: N of them, N ~ Poisson(λ·(period(N + 1) +
E[W])) — a big batch follows a long one, so the period is then taken once more at the quantile batch —
taken at its (1 − ε) quantile, and its own prompt at the prompt lengths' (1 − ε) quantile (batching
multiplies a pipeline's latency, and long prompts take longer): TTFT_q(λ) = W_q(λ) + (period(k̄) − k̄·s) +
latency(N_q + p_q/p̄) + KV transfer ≤ TTFT SLO, where the middle term is the fixed cost (per-step overhead,
weights read) of the batch in flight that the M/G/1 work (k̄·s) misses. The terms are quantiles added, so the
bound is conservative; tests/test_slo_capacity.py holds it against the simulator. The engine's token budget
(max_num_batched_tokens) is chosen among PREFILL_BUDGETS for the most goodput. The KV-transfer reserve is a
mean request's KV through the replica's NIC (kv_reserve). Without a TTFT SLO a prefill replica serves up to
RHO_UNBOUNDED of its capacity (beyond that its queue grows without bound in any finite run); with one, at most
PREFILL_MAX_LOAD of it (a utilisation cap: above it the batching server's waits outgrow the M/G/1 bound).

Decode replica (TPOT = step time + waiting for a slot, spread over the output): decode_perf caps the
batch B so that a full step meets the TPOT SLO; a request holds one of B slots for D̄ steps, so the
replica is an M/G/B queue and Erlang C bounds the share of requests that wait for a slot (each such wait
is counted as a miss). Without a TPOT SLO the decode wait counts against nothing, so RHO_UNBOUNDED again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.costs.layout import Layout
from planner.costs.queueing import erlang_c, largest_rate, mg1_mean_wait, mg1_wait_quantile, poisson_quantile
from planner.costs.replica import (
    DecodePerf,
    PrefillPerf,
    prefill_perf,
    prefill_pipeline,
)
from planner.inputs.problem import Cluster, Slo

TTFT_SHARE = 0.5  # of the miss budget, for TTFT when both SLOs are set
PREFILL_BUDGETS = (2048, 4096, 8192)  # max_num_batched_tokens tried for a prefill replica under a TTFT SLO,
# besides one long prompt's worth (batches of one: no prompt waits for another's compute)
RHO_UNBOUNDED = 0.95  # utilisation served when the SLO does not constrain a phase
# A batching prefill server keeps up at high load only by letting its queue grow until batches are big
# enough; past ~80 % of its full-batch capacity its waits outgrow the M/G/1 bound (measured against the
# simulator, tests/test_slo_capacity.py), so its rate within a TTFT SLO is capped there.
PREFILL_MAX_LOAD = 0.8
BATCH_FIXED_POINT_STEPS = 8
MATES_STEPS = 2  # the batch-mates quantile, then once more with the period of a batch that size


def miss_budget(slo: Slo) -> tuple[float, float]:
    """(ε_TTFT, ε_TPOT): each SLO's share of the requests the plan may miss (module docstring)."""
    miss = 1.0 - slo.attainment
    if slo.ttft is not None and slo.tpot is not None:
        return miss * TTFT_SHARE, miss * (1.0 - TTFT_SHARE)
    return (miss, 0.0) if slo.ttft is not None else (0.0, miss)


def prompt_scv(cluster: Cluster) -> float:
    """Squared coefficient of variation of the prompt length (prefill service time ∝ prompt tokens)."""
    prompt = cluster.workload.prompt
    return max(0.0, prompt.second_moment / prompt.mean**2 - 1.0)


def kv_reserve(cluster: Cluster, layout: Layout) -> float:
    """Seconds of TTFT kept for shipping a mean request's KV out of the replica: through the slowest NIC of
    its nodes. Only the replica's own nodes count, so a change elsewhere in the cluster never changes its
    figures; a route inside a node is faster (NVLink/PCIe), one over a link slower than the NICs pays the
    difference in the plan's TTFT (and in the verifier's simulation)."""
    nodes = {cluster.gpu_by_id[s.gpus[0]].node for s in layout.stages}
    return kv_bytes_per_request(cluster) / min(cluster.node_by_name[n].nic for n in nodes)


@dataclass(frozen=True)
class _PrefillQueue:
    """What the TTFT bound reads about one prefill engine, computed once (the bound is evaluated ~30 times
    per replica by bisection): pipeline period and latency of 1 and of n mean prompts, service, variability."""

    n: int
    period_1: float
    latency_1: float
    period_n: float
    latency_n: float
    scv: float
    long_prompt: float  # the (1 − miss) prompt length, in mean prompts

    @classmethod
    def of(cls, cluster: Cluster, layout: Layout, perf: PrefillPerf, miss: float) -> _PrefillQueue:
        n = perf.batch_seqs
        one = prefill_pipeline(cluster, layout, 1)
        full = prefill_pipeline(cluster, layout, n)  # memoised stage times: n = 1 costs nothing more
        prompt = cluster.workload.prompt
        long_prompt = max(1.0, prompt.quantile(1.0 - miss) / prompt.mean)
        return cls(n, one[0], one[1], full[0], full[1], prompt_scv(cluster), long_prompt)

    def at(self, k: float) -> tuple[float, float]:
        """(period, latency) of a batch of k mean prompts (linear between 1 and n)."""
        share = (k - 1) / (self.n - 1) if self.n > 1 else 0.0
        return (
            self.period_1 + share * (self.period_n - self.period_1),
            self.latency_1 + share * (self.latency_n - self.latency_1),
        )

    def ttft_quantile(self, rate: float, miss: float) -> float:
        """The (1 − miss)-quantile of TTFT at `rate`, without the KV transfer (module docstring)."""
        n, service = self.n, self.period_n / self.n
        k = 1.0
        for _ in range(BATCH_FIXED_POINT_STEPS):
            k = min(float(n), max(1.0, rate * self.at(k)[0]))
        wait = mg1_wait_quantile(rate, service, self.scv, miss)
        if math.isinf(wait):
            return math.inf
        mean_wait = mg1_mean_wait(rate, service, self.scv)
        mates = k - 1.0
        for _ in range(MATES_STEPS):  # a big batch follows a long one: one step of that feedback
            arrivals = rate * (self.at(mates + 1.0)[0] + mean_wait)  # since the last batch formed
            mates = min(float(n) - 1.0, float(poisson_quantile(arrivals, 1.0 - miss)))
        overhead = max(0.0, self.at(k)[0] - k * service)  # the batch in flight's fixed cost, not in the M/G/1 work
        return wait + overhead + self.at(mates + self.long_prompt)[1]


def prefill_ttft_quantile(cluster: Cluster, layout: Layout, perf: PrefillPerf, rate: float, miss: float) -> float:
    """The (1 − miss)-quantile of TTFT at `rate` req/s, without the KV transfer (module docstring)."""
    return _PrefillQueue.of(cluster, layout, perf, miss).ttft_quantile(rate, miss)


def prefill_goodput(cluster: Cluster, layout: Layout, perf: PrefillPerf, slo: Slo) -> float:
    """Requests/s the prefill replica serves with the TTFT quantile within the SLO (module docstring)."""
    if slo.ttft is None:
        return RHO_UNBOUNDED * perf.capacity_rps
    budget = slo.ttft - kv_reserve(cluster, layout)
    miss, _ = miss_budget(slo)
    queue = _PrefillQueue.of(cluster, layout, perf, miss)
    return largest_rate(lambda rate: queue.ttft_quantile(rate, miss) <= budget, PREFILL_MAX_LOAD * perf.capacity_rps)


def prefill_within_slo(cluster: Cluster, layout: Layout, slo: Slo) -> tuple[PrefillPerf, float] | None:
    """(the prefill engine, its goodput) with the token budget that serves the most within the SLO:
    smaller batches wait less behind each other, larger ones use the GPUs better; None if it cannot run."""
    best: tuple[PrefillPerf, float] | None = None
    single = math.ceil(cluster.workload.prompt.upper)
    budgets = sorted({single, *PREFILL_BUDGETS}) if slo.ttft is not None else [PREFILL_BUDGETS[-1]]
    for budget in budgets:
        perf = prefill_perf(cluster, layout, budget)
        if perf is None:
            continue
        rate = prefill_goodput(cluster, layout, perf, slo)
        if best is None or rate > best[1]:
            best = (perf, rate)
    return best


def decode_goodput(cluster: Cluster, perf: DecodePerf, slo: Slo) -> float:
    """Requests/s the decode replica serves with at most ε_TPOT of requests waiting for a slot."""
    if slo.tpot is None:
        return RHO_UNBOUNDED * perf.capacity_rps
    _, miss = miss_budget(slo)
    hold = cluster.workload.decode_tokens * perf.tpot_s
    return largest_rate(lambda rate: erlang_c(perf.batch, rate * hold) <= miss, perf.capacity_rps)
