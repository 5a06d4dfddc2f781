"""A colocated engine with chunked prefill (vLLM's default): every step carries the running sequences'
decode tokens plus a chunk of waiting prompts, up to max_num_batched_tokens tokens in all.

Why its own module: this is the interference a colocated replica suffers — a decode step stretched by
the prefill chunk it carries, which is what a TPOT SLO sees — and the planner and the simulator must
time it the same way.

Step time (per stage, through the per-layer primitives of planner.costs.replica, so it follows any
calibration of them): mixed(b, c) = prefill(c) + decode(b) − decode(0). A prefill chunk of c tokens and a
decode step of b sequences each pay a step's fixed costs (the weights read once, per-layer and per-step
overheads), which decode(0) — a step with (next to) no tokens — is; the fused step pays them once. So
max(prefill(c), decode(b)) ≤ mixed(b, c) ≤ prefill(c) + decode(b). Pipelines split both into pp
micro-batches, as decode steps do.

Operating points (Little's law): when x requests enter per step on average, b = x·D̄ sequences decode
(D̄ decode tokens per request) and the prompts that arrived during one step are prefilled in the next: a
chunk of N mean prompts, N ~ Poisson(x), cut at the room b leaves in the token budget M. The mean step is
T̄(x) = E[mixed(b, chunk)] — the mean over N, since the step is convex in the chunk — and the rate x / T̄(x).
Saturated: the largest x the batch cap B and the budget allow (x·(p̄ + D̄) ≤ M). Under a TPOT SLO every
step must meet it, so M is the largest budget whose longest step — mixed(B, M − B) or mixed(0, M), the
budget split either way — does (vLLM's advice: size max_num_batched_tokens for the inter-token latency).
Under a TTFT SLO the prompt queue is an M/G/1 queue whose server prefills the room of each full step:
per-request service s = p̄·T_full / room, a long prompt alone takes ⌈p_q / room⌉ full steps, and
TTFT_q = W_q + that; a request holds one of B slots for its prefill and decode steps (Erlang C bounds the
requests that wait for one). Batch caps B, B/2, B/4 are scored and the one with the most goodput kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.special import gammaln

from planner.costs.layout import Layout
from planner.costs.memory import kv_capacity_tokens
from planner.costs.queueing import erlang_c, largest_rate, mg1_wait_quantile
from planner.costs.replica import (
    DECODE_KV_HEADROOM,
    DEFAULT_BATCHED_TOKENS,
    MAX_NUM_SEQS,
    decode_stage_time,
    hop_time,
    prefill_tokens_stage_time,
    stage_hardware,
)
from planner.costs.slo import RHO_UNBOUNDED, miss_budget, prompt_scv
from planner.inputs.problem import Cluster, Slo

MIN_CHUNK = 16  # tokens: a budget that leaves less than this for prefill chunks serves no prompt
EMPTY_BATCH = 1e-6  # "no tokens" for the step model, whose GEMM efficiency term is 0/0 at exactly none
BATCH_FRACTIONS = (1.0, 0.5, 0.25)  # batch caps tried below the largest one, under an SLO
CURVE = tuple(np.geomspace(1e-3, 1.0, 12))  # operating points, as fractions of the most requests per step


def mixed_step_time(
    cluster: Cluster, layout: Layout, decodes: float, context: float, chunk_tokens: float, chunk_squares: float,
    chunk_seqs: float = 1.0,
) -> float:  # fmt: skip
    """One engine step carrying `decodes` decode tokens (mean context `context`) and a prefill chunk of
    `chunk_tokens` tokens whose causal attention costs Σ((done + chunk)² − done²) = `chunk_squares`
    (module docstring). With no chunk it is exactly the decode step."""
    pp = layout.pp
    micro, chunk, squares, seqs = max(decodes / pp, EMPTY_BATCH), chunk_tokens / pp, chunk_squares / pp, chunk_seqs / pp
    times = []
    for i, stage in enumerate(layout.stages):
        hw = stage_hardware(cluster, stage)
        last = i == pp - 1
        decode = decode_stage_time(cluster, stage, hw, micro, context, last)
        if chunk > 0:
            prefill = prefill_tokens_stage_time(cluster, stage, hw, seqs, chunk, squares, last)
            decode += prefill - decode_stage_time(cluster, stage, hw, EMPTY_BATCH, context, last)
        times.append(decode)
    hops = [hop_time(cluster, a, b, micro + chunk) for a, b in pairwise(layout.stages)]
    return max(sum(times) + sum(hops), pp * max(times + hops))


@dataclass(frozen=True)
class ColocatedPerf:
    capacity_rps: float  # saturated
    goodput_rps: float | None  # within the SLO (None without one)
    tpot_s: float  # mean step at saturation (without SLO) or the longest step allowed (with one)
    ttft_s: float  # a mean prompt alone: its chunks' steps
    batch: int  # max_num_seqs
    max_num_batched_tokens: int
    kv_tokens: float


@dataclass(frozen=True)
class _Shape:
    """What the workload asks of each step: mean prompt, its attention cost per token, decode tokens, context."""

    prompt: float
    squares_per_token: float
    decode: float
    context: float

    @classmethod
    def of(cls, cluster: Cluster) -> _Shape:
        w = cluster.workload
        return cls(
            w.prompt.mean, w.prompt.second_moment / w.prompt.mean, w.decode_tokens, w.prompt.mean + w.decode_tokens / 2
        )

    def step(self, cluster: Cluster, layout: Layout, decodes: float, chunk: float) -> float:
        return mixed_step_time(
            cluster, layout, decodes, self.context, chunk, chunk * self.squares_per_token, chunk / self.prompt
        )


def colocated_perf(cluster: Cluster, layout: Layout, slo: Slo | None) -> ColocatedPerf | None:
    """Capacity (and goodput within `slo`) of a colocated replica; None when it cannot hold the model and
    one long request's KV, when its pipeline crosses a link with no bandwidth (every step infinite), or
    when it cannot serve within the SLO at all."""
    w = cluster.workload
    kv_tokens = kv_capacity_tokens(cluster, layout, DEFAULT_BATCHED_TOKENS)
    shape = _Shape.of(cluster)
    if kv_tokens < w.prompt.upper + w.output.upper:
        return None
    if not math.isfinite(shape.step(cluster, layout, 1.0, float(MIN_CHUNK))):
        return None
    budget = max(DEFAULT_BATCHED_TOKENS, math.ceil(w.prompt.upper))
    batch = max(1, min(MAX_NUM_SEQS, math.floor(DECODE_KV_HEADROOM * kv_tokens / (shape.prompt + shape.decode))))
    if slo is None:
        capacity, step = _saturated(cluster, layout, shape, batch, budget)
        alone = math.ceil(shape.prompt / budget) * shape.step(cluster, layout, 0, min(shape.prompt, budget))
        return ColocatedPerf(capacity, None, step, alone, batch, budget, kv_tokens)  # batch ≤ 512 < budget
    best: ColocatedPerf | None = None
    for cap in sorted({max(1, math.floor(batch * f)) for f in BATCH_FRACTIONS}, reverse=True):
        option = _within_slo(cluster, layout, shape, slo, cap, kv_tokens)
        if option is not None and (best is None or option.goodput_rps > best.goodput_rps):  # type: ignore[operator]
            best = option
    return best


def _operating_point(
    cluster: Cluster, layout: Layout, shape: _Shape, per_step: float, budget: int
) -> tuple[float, float, float, float] | None:
    """(rate, mean step, room, full step) when `per_step` requests enter per step on average (module
    docstring): the room is what the decodes leave of the token budget to prompts, the full step one that
    fills it. None when their prompt tokens do not fit the token budget beside their decodes.

    The prompts that arrived during a step are prefilled in the next one, so a step's chunk is N mean
    prompts, N ~ Poisson(per_step), cut at the room the decodes leave (the tokens cut off are carried into
    steps with room to spare, at the cost of a full step's chunk per room's worth); the step time is convex
    in the chunk (free below the roofline's
    ridge, compute-bound above), so the mean step is the mean over N, not the step of the mean chunk
    (read off a few chunk sizes, linear in between)."""
    decodes = per_step * shape.decode
    room = budget - decodes
    if room < MIN_CHUNK or per_step * shape.prompt > room:
        return None  # more prompt tokens than the steps can carry: beyond saturation
    counts = np.arange(0, math.ceil(per_step + 6 * math.sqrt(per_step) + 6) + 1)
    weights = np.exp(counts * math.log(per_step) - per_step - gammaln(counts + 1))  # Poisson pmf
    chunks = np.minimum(counts * shape.prompt, room)
    spill = (per_step * shape.prompt - float(weights @ chunks)) / room  # cut tokens, in full steps' worth
    sizes = np.unique(np.concatenate(([0.0], np.minimum(shape.prompt * 2.0 ** np.arange(0, 4), room), [room])))
    times = np.array([shape.step(cluster, layout, decodes, float(c)) for c in sizes])
    step = float(weights @ np.interp(chunks, sizes, times)) + max(spill, 0.0) * (times[-1] - times[0])
    return per_step / step, step, room, float(times[-1])


def _saturated(cluster: Cluster, layout: Layout, shape: _Shape, batch: int, budget: int) -> tuple[float, float]:
    """(requests/s, mean step) at the most requests per step the batch cap and the token budget allow."""
    most = min(batch / shape.decode, budget / (shape.prompt + shape.decode))
    point = _operating_point(cluster, layout, shape, most, budget)
    if point is None:  # the budget leaves less than MIN_CHUNK: take a slightly lighter load
        point = _operating_point(cluster, layout, shape, most * (budget - MIN_CHUNK) / budget, budget)
    return point[:2] if point is not None else (0.0, math.inf)


def _step_curve(cluster: Cluster, layout: Layout, shape: _Shape, batch: int, budget: int) -> np.ndarray:
    """Operating points from light load to saturation, one per row: (rate, mean step, room, full step),
    rates increasing. Figures at a rate are read off by linear interpolation (they change smoothly)."""
    most = min(batch / shape.decode, budget / (shape.prompt + shape.decode))
    points = [p for f in CURVE if (p := _operating_point(cluster, layout, shape, most * f, budget)) is not None]
    curve = np.array(points, dtype=float)  # never empty: the lightest point fits any budget (_within_slo)
    curve[:, 0] = np.maximum.accumulate(curve[:, 0])
    return curve


def _longest_step(cluster: Cluster, layout: Layout, shape: _Shape, batch: int, budget: int) -> float:
    """The longest step an engine with this batch cap and token budget can take: the budget filled by
    decodes and a chunk in any split. A step is near-linear in each, so the longest is at an end: every
    slot decoding beside the rest as a chunk, or no decode and the whole budget as a chunk (prefill tokens
    can cost more than decode tokens, e.g. on a compute-bound pipeline)."""
    return max(shape.step(cluster, layout, batch, budget - batch), shape.step(cluster, layout, 0.0, float(budget)))


def _token_budget(cluster: Cluster, layout: Layout, shape: _Shape, batch: int, tpot: float | None) -> int | None:
    """The largest max_num_batched_tokens whose longest step (`_longest_step`) meets `tpot`."""
    high = max(DEFAULT_BATCHED_TOKENS, math.ceil(cluster.workload.prompt.upper))
    if tpot is None:
        return high
    low = batch + MIN_CHUNK
    if _longest_step(cluster, layout, shape, batch, low) > tpot:
        return None
    if _longest_step(cluster, layout, shape, batch, high) <= tpot:
        return high
    while high - low > 1:
        mid = (low + high) // 2
        if _longest_step(cluster, layout, shape, batch, mid) <= tpot:
            low = mid
        else:
            high = mid
    return low


def _within_slo(
    cluster: Cluster, layout: Layout, shape: _Shape, slo: Slo, batch: int, kv_tokens: float
) -> ColocatedPerf | None:
    """The colocated replica run with `batch` slots and the token budget the TPOT SLO allows; None if none."""
    budget = _token_budget(cluster, layout, shape, batch, slo.tpot)
    if budget is None:
        return None
    full = _longest_step(cluster, layout, shape, batch, budget)  # ≤ the TPOT SLO
    ttft_miss, tpot_miss = miss_budget(slo)
    scv = prompt_scv(cluster)
    slot_miss = tpot_miss if slo.tpot is not None else ttft_miss
    long_prompt = max(shape.prompt, cluster.workload.prompt.quantile(1.0 - ttft_miss))
    curve = _step_curve(cluster, layout, shape, batch, budget)  # never empty: the lightest point fits any budget
    rates = curve[:, 0]

    def prompts(rate: float) -> tuple[float, float, float]:
        """(mean step, per-request prompt service while prompts queue, a long prompt alone) at `rate`:
        the running sequences leave `room` tokens of each full step to prompts."""
        step, room, busy = (float(np.interp(rate, rates, curve[:, i])) for i in (1, 2, 3))
        return step, shape.prompt * busy / room, math.ceil(long_prompt / room) * busy

    def ok(rate: float) -> bool:
        if rate > rates[-1]:
            return False
        step, service, alone = prompts(rate)
        if rate * service >= (1.0 if slo.ttft is not None else RHO_UNBOUNDED):
            return False
        hold = (shape.decode + math.ceil(shape.prompt / (budget - batch))) * step  # a slot, per request
        if erlang_c(batch, rate * hold) > slot_miss:
            return False
        return slo.ttft is None or mg1_wait_quantile(rate, service, scv, ttft_miss) + alone <= slo.ttft

    capacity = float(rates[-1])
    goodput = largest_rate(ok, capacity)
    if goodput <= 0.0:
        return None
    return ColocatedPerf(capacity, goodput, full, prompts(0.0)[2], batch, budget, kv_tokens)
