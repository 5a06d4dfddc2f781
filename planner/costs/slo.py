"""A disaggregated replica's capacity within the SLO: the request rate at which, under Poisson arrivals,
at least the SLO's attainment of requests meet it (queueing included, not unloaded latency).

Miss budget: a plan may miss ε = 1 − attainment of requests. A request misses if its TTFT or its TPOT
does, so by the union bound ε_TTFT + ε_TPOT ≤ ε suffices; each SLO that is set gets its share
(TTFT_SHARE of ε for TTFT when both are, all of ε for the only one).

Prefill replica (TTFT = queueing + its batch + KV transfer): the engine batches waiting prompts up to
max_num_batched_tokens; at full batches it serves one mean request every s = period(n)/n seconds. Under
load λ batches hold k̄ = clamp(λ·period(k̄), 1, n) prompts on average (a fixed point; period and latency
interpolated linearly in the prompts between 1 and n). A request waits for the work ahead of it — an
M/G/1 queue with service s and the prompt lengths' variability (planner.costs.queueing) — then goes
through the pipeline in a batch with the prompts that arrived since the last batch formed: N of them,
N ~ Poisson(λ·(period(k̄) + E[W])), taken at its (1 − ε) quantile, and its own prompt at the prompt
lengths' (1 − ε) quantile (batching multiplies a pipeline's latency, and long prompts take longer):
TTFT_q(λ) = W_q(λ) + latency(N_q + p_q/p̄) + KV transfer ≤ TTFT SLO. The terms are quantiles added,
so the bound is conservative; tests/test_slo_capacity.py holds it against the simulator.
The engine's token budget (max_num_batched_tokens) is chosen among PREFILL_BUDGETS for the most goodput.
The KV-transfer reserve is a mean request's KV through the replica's NIC (kv_reserve). Without a TTFT SLO
a prefill replica serves up to RHO_UNBOUNDED of its
capacity (beyond that its queue grows without bound in any finite run).

Decode replica (TPOT = step time + waiting for a slot, spread over the output): decode_perf caps the
batch B so that a full step meets the TPOT SLO; a request holds one of B slots for D̄ steps, so the
replica is an M/G/B queue and Erlang C bounds the share of requests that wait for a slot (each such wait
is counted as a miss). Without a TPOT SLO the decode wait counts against nothing, so RHO_UNBOUNDED again.
"""

from __future__ import annotations

import math

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.costs.layout import Layout
from planner.costs.queueing import erlang_c, largest_rate, mg1_mean_wait, mg1_wait_quantile, poisson_quantile
from planner.costs.replica import (
    DecodePerf,
    PrefillPerf,
    hop_time,
    prefill_perf,
    prefill_stage_time,
    stage_hardware,
)
from planner.inputs.problem import Cluster, Slo

TTFT_SHARE = 0.5  # of the miss budget, for TTFT when both SLOs are set
PREFILL_BUDGETS = (2048, 4096, 8192)  # max_num_batched_tokens tried for a prefill replica under a TTFT SLO,
# besides one long prompt's worth (batches of one: no prompt waits for another's compute)
RHO_UNBOUNDED = 0.95  # utilisation served when the SLO does not constrain a phase
BATCH_FIXED_POINT_STEPS = 8


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


def prefill_pipeline(cluster: Cluster, layout: Layout, seqs: float) -> tuple[float, float]:
    """(period, latency) of a batch of `seqs` mean prompts: when the pipeline takes the next batch, and
    how long one batch takes through every stage and hop."""
    prompt = cluster.workload.prompt
    last = layout.pp - 1
    times = [
        prefill_stage_time(cluster, stage, stage_hardware(cluster, stage), seqs, i == last)
        for i, stage in enumerate(layout.stages)
    ]
    hops = [hop_time(cluster, a, b, seqs * prompt.mean) for a, b in zip(layout.stages, layout.stages[1:])]
    return max(times + hops), sum(times) + sum(hops)


def kv_reserve(cluster: Cluster, layout: Layout) -> float:
    """Seconds of TTFT kept for shipping a mean request's KV out of the replica: through the slowest NIC of
    its nodes. Only the replica's own nodes count, so a change elsewhere in the cluster never changes its
    figures; a route inside a node is faster (NVLink/PCIe), one over a link slower than the NICs pays the
    difference in the plan's TTFT (and in the verifier's simulation)."""
    nodes = {cluster.gpu_by_id[s.gpus[0]].node for s in layout.stages}
    return kv_bytes_per_request(cluster) / min(cluster.node_by_name[n].nic for n in nodes)


def prefill_ttft_quantile(cluster: Cluster, layout: Layout, perf: PrefillPerf, rate: float, miss: float) -> float:
    """The (1 − miss)-quantile of TTFT at `rate` req/s, without the KV transfer (module docstring)."""
    n = perf.batch_seqs
    prompt = cluster.workload.prompt
    period_1, latency_1 = prefill_pipeline(cluster, layout, 1)
    period_n, latency_n = (period_1, latency_1) if n == 1 else prefill_pipeline(cluster, layout, n)

    def at(k: float) -> tuple[float, float]:  # a batch of k mean prompts (linear between 1 and n)
        share = (k - 1) / (n - 1) if n > 1 else 0.0
        return period_1 + share * (period_n - period_1), latency_1 + share * (latency_n - latency_1)

    k = 1.0
    for _ in range(BATCH_FIXED_POINT_STEPS):
        k = min(float(n), max(1.0, rate * at(k)[0]))
    scv = prompt_scv(cluster)
    wait = mg1_wait_quantile(rate, period_n / n, scv, miss)
    if math.isinf(wait):
        return math.inf
    arrivals = rate * (at(k)[0] + mg1_mean_wait(rate, period_n / n, scv))  # since the last batch formed
    mates = min(float(n) - 1.0, float(poisson_quantile(arrivals, 1.0 - miss)))
    own = max(1.0, prompt.quantile(1.0 - miss) / prompt.mean)  # a long prompt, in mean prompts
    return wait + at(mates + own)[1]


def prefill_goodput(cluster: Cluster, layout: Layout, perf: PrefillPerf, slo: Slo) -> float:
    """Requests/s the prefill replica serves with the TTFT quantile within the SLO (module docstring)."""
    if slo.ttft is None:
        return RHO_UNBOUNDED * perf.capacity_rps
    budget = slo.ttft - kv_reserve(cluster, layout)
    miss, _ = miss_budget(slo)
    return largest_rate(
        lambda rate: prefill_ttft_quantile(cluster, layout, perf, rate, miss) <= budget, perf.capacity_rps
    )


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
