"""Model form v2: the time of one engine step on a TP group, from work counts and fitted factors.

Notation (per layer, per GPU of a TP group of t): m tokens through the GEMMs (prefill Σ prompt tokens,
decode the batch), P parameters per layer, b bytes per value, h hidden, n heads, n_kv KV heads, d head
dim, f FFN width, peak FLOP/s π, DRAM bandwidth B.

    gemm      = max(2Pm/t · (m + m½)/m / (π·η_c),  (P·b/t + activations) / (B·η_m))   η_c(m) = η_c·m/(m+m½)
    elementw. = (norms, RoPE, activation, residual bytes) / (B·η_m) + τ_layer
    attention = max(attention FLOPs / (π·η_attn), attention bytes / (B·η_kv)) + τ_attn
                prefill: 2·(n/t)·d·Σs² causal FLOPs; decode: Σcontext × KV bytes per token read
    all-reduce = 2 per layer of m·h·b bytes, from the link's measured (α, β) table (planner.costs.allreduce)
    step      = t0(t) + L·(gemm + elementwise + attention + all-reduce) + LM head (a GEMM on vocab·h)

Every efficiency η ≤ 1 and every overhead τ, t0 ≥ 0 (the calibration schema and the fit's bounds
enforce it), so no step is faster than the physical roofline max(FLOPs/π, bytes/B) of its work.
`Work` holds the counts; a record that did not measure a term (a measurement's `excludes`) has that
term's weight set to 0, which is how fits compare like with like. Works with floats (the planner's hot
loop) and with numpy arrays of many records at once (the fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from planner.inputs.calibrations import GpuParameters, StepOverhead
from planner.inputs.catalog import GpuProfile, ModelProfile

# Priors for GPUs with no calibration and no fallback (inline GPUs of a cluster file): the catalogue's
# efficiencies, plus overheads of the magnitude fitted on A100/H100/H200/L40S (profiles/calibrations/:
# τ_layer 32–36 µs, τ_attn 23–44 µs, m½ 0–76 tokens).
PRIOR_TAU_LAYER_S = 35e-6
PRIOR_TAU_ATTENTION_S = 30e-6
PRIOR_TOKENS_HALF = 16.0
# t0(TP): vLLM's per-iteration scheduling, input preparation, sampling and launch (see RESULTS.md:
# "what is fitted and what is prior"). No public engine-scope data to fit it; `hexplan calibrate` on
# engine-scope measurements (hexplan profile with vLLM, vllm bench latency) replaces it.
PRIOR_STEP_OVERHEAD = (
    StepOverhead(tp=1, seconds=1.0e-3),
    StepOverhead(tp=2, seconds=1.25e-3),
    StepOverhead(tp=4, seconds=1.5e-3),
    StepOverhead(tp=8, seconds=1.75e-3),
)
TERMS = ("gemm", "elementwise", "attention", "allreduce", "lm_head", "overhead")


@dataclass(frozen=True)
class Factors:
    """A GPU's factors resolved for one TP size and dtype: what `seconds` reads (plain floats, fast)."""

    peak_flops: float
    bandwidth: float
    eta_compute: float
    tokens_half: float
    eta_memory: float
    tau_layer: float
    eta_attention: float
    eta_kv: float
    tau_attention: float
    step_overhead: float


@dataclass(slots=True)  # not frozen: built in the planner's hot loop, where frozen __init__ costs 2×
class Work:
    """Counts of one step on one GPU of a TP group (floats, or numpy arrays of many records).

    Per layer: tokens (GEMM rows), gemm_flops, gemm_bytes, elem_bytes, attn_flops, attn_bytes,
    allreduce_s (already timed on the link); whole step: layers, lm_* (the LM head GEMM; 0 = none),
    steps (how many engine iterations, each paying t0); w_* weights (1 = the term is in, 0 = excluded).
    """

    layers: Any
    tokens: Any
    gemm_flops: Any
    gemm_bytes: Any
    elem_bytes: Any
    attn_flops: Any
    attn_bytes: Any
    allreduce_s: Any = 0.0
    lm_tokens: Any = 0.0
    lm_flops: Any = 0.0
    lm_bytes: Any = 0.0
    steps: Any = 0.0
    w_elementwise: Any = 1.0
    w_attention: Any = 1.0
    w_allreduce: Any = 1.0


def prior_parameters(gpu: GpuProfile) -> GpuParameters:
    """Factors of a GPU with no calibration: the catalogue's efficiencies and the module's priors."""
    return GpuParameters(
        eta_compute=gpu.compute_efficiency,
        tokens_half=PRIOR_TOKENS_HALF,
        eta_memory=gpu.memory_efficiency,
        tau_layer_s=PRIOR_TAU_LAYER_S,
        eta_attention=gpu.compute_efficiency,
        eta_kv=gpu.memory_efficiency,
        tau_attention_s=PRIOR_TAU_ATTENTION_S,
        step_overhead=list(PRIOR_STEP_OVERHEAD),
    )


def step_overhead(table: list[StepOverhead] | tuple[StepOverhead, ...], tp: int) -> float:
    """t0(tp), linear in log2(tp) between table rows, held constant beyond them."""
    rows = sorted(table, key=lambda r: r.tp)
    if tp <= rows[0].tp:
        return rows[0].seconds
    for low, high in pairwise(rows):
        if tp <= high.tp:
            w = (np.log2(tp) - np.log2(low.tp)) / (np.log2(high.tp) - np.log2(low.tp))
            return float(low.seconds + w * (high.seconds - low.seconds))
    return rows[-1].seconds


def factors(params: GpuParameters, peak_flops: float, bandwidth: float, tp: int) -> Factors:
    return Factors(
        peak_flops,
        bandwidth,
        params.eta_compute,
        params.tokens_half,
        params.eta_memory,
        params.tau_layer_s,
        params.eta_attention,
        params.eta_kv,
        params.tau_attention_s,
        step_overhead(params.step_overhead, tp),
    )


_FACTORS: dict[tuple[int, str, int], tuple[GpuProfile, Factors]] = {}


def gpu_factors(gpu: GpuProfile, dtype: str, tp: int) -> Factors:
    """The GPU's factors (its calibration, a fallback's, or the priors) for tp and dtype; memoised."""
    key = (id(gpu), dtype, tp)
    hit = _FACTORS.get(key)
    if hit is not None and hit[0] is gpu:
        return hit[1]
    params = gpu.calibration.parameters if gpu.calibration is not None else prior_parameters(gpu)
    result = factors(params, gpu.flops(dtype), gpu.memory_bandwidth, tp)
    _FACTORS[key] = (gpu, result)
    return result


# ----------------------------------------------------------------------------- work counts


def gemm_counts(model: ModelProfile, tp: int, b: float, m: Any) -> tuple[Any, Any]:
    """(FLOPs, bytes) per GPU of one layer's four projections at m rows: weights once, activations in/out."""
    ffn_mult = 3 if model.gated_mlp else 2
    q, kv = model.heads * model.head_dim, model.kv_heads * model.head_dim
    flops = 2 * model.params_per_layer * m / tp
    activations = m * b * (4 * model.hidden + (2 * q + 2 * kv + ffn_mult * model.ffn) / tp)
    return flops, model.params_per_layer * b / tp + activations


def elementwise_bytes(model: ModelProfile, tp: int, b: float, m: Any) -> Any:
    """Bytes of 2 norms (r+w h), 2 residual adds (2r+w h), RoPE on q and k (r+w), activation (gated: 2r+w f)."""
    rope = 2 * (model.heads + model.kv_heads) * model.head_dim / tp
    act = (3 if model.gated_mlp else 2) * model.ffn / tp
    return m * b * (10 * model.hidden + rope + act)


def prefill_attention_counts(model: ModelProfile, tp: int, b: float, m: Any, squares: Any) -> tuple[Any, Any]:
    """(causal FLOPs, bytes) of prefill attention per GPU: Σs² drives FLOPs; Q, K, V read, O and KV written."""
    heads = model.heads / tp
    flops = 2 * heads * model.head_dim * squares
    nbytes = m * b * model.head_dim * (2 * heads + 4 * model.kv_heads / tp)
    return flops, nbytes


def decode_attention_counts(
    model: ModelProfile, tp: int, b: float, batch: Any, kv_tokens: Any, kv_replication: float
) -> tuple[Any, Any]:
    """(FLOPs, bytes) of one decode step's attention per GPU: the batch's KV cache (kv_tokens = Σ context) read."""
    heads = model.heads / tp
    flops = 4 * kv_tokens * heads * model.head_dim
    kv_per_token = 2 * model.kv_heads * model.head_dim * b * kv_replication / tp
    return flops, kv_tokens * kv_per_token + batch * b * 2 * heads * model.head_dim


def lm_head_counts(model: ModelProfile, tp: int, b: float, rows: Any) -> tuple[Any, Any]:
    """(FLOPs, bytes) of the LM head GEMM (vocab × hidden, sharded by TP) for `rows` sequences."""
    weights = model.vocab * model.hidden
    return 2 * weights * rows / tp, weights * b / tp + rows * b * (model.hidden + model.vocab / tp)


# ----------------------------------------------------------------------------- time


def _parts(f: Factors, w: Work, maximum) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Seconds of each term of TERMS, in that order (the formula of the module docstring, written once)."""
    bw_m = f.bandwidth * f.eta_memory
    peak_c = f.peak_flops * f.eta_compute
    gemm = maximum(w.gemm_flops * (w.tokens + f.tokens_half) / (w.tokens * peak_c), w.gemm_bytes / bw_m)
    attention = maximum(w.attn_flops / (f.peak_flops * f.eta_attention), w.attn_bytes / (f.bandwidth * f.eta_kv))
    lm_rows = maximum(w.lm_tokens, 1.0)
    lm_head = maximum(w.lm_flops * (lm_rows + f.tokens_half) / (lm_rows * peak_c), w.lm_bytes / bw_m)
    return (
        w.layers * gemm,
        w.layers * w.w_elementwise * (w.elem_bytes / bw_m + f.tau_layer),
        w.layers * w.w_attention * (attention + f.tau_attention),
        w.layers * w.w_allreduce * w.allreduce_s,
        lm_head,
        w.steps * f.step_overhead,
    )


def terms(f: Factors, w: Work, maximum=max) -> dict[str, Any]:
    """Seconds per term of TERMS for the work (pass maximum=np.maximum for arrays)."""
    return dict(zip(TERMS, _parts(f, w, maximum), strict=True))


def seconds(f: Factors, w: Work, maximum=max) -> Any:
    """Step time: the sum of the terms (one float, or an array for arrays of work)."""
    gemm, elementwise, attention, allreduce, lm_head, overhead = _parts(f, w, maximum)
    return gemm + elementwise + attention + allreduce + lm_head + overhead


def prefill_work(
    model: ModelProfile,
    tp: int,
    b: float,
    layers: int,
    seqs: float,
    tokens: float,
    squares: float,
    *,
    allreduce_s: float,
    lm_head: bool,
    steps: float,
) -> Work:
    """A prefill step of `seqs` prompts, `tokens` in all with Σs² = `squares`, through `layers` layers."""
    gf, gb = gemm_counts(model, tp, b, tokens)
    af, ab = prefill_attention_counts(model, tp, b, tokens, squares)
    lf, lb = lm_head_counts(model, tp, b, seqs) if lm_head else (0.0, 0.0)
    return Work(
        layers, tokens, gf, gb, elementwise_bytes(model, tp, b, tokens), af, ab, allreduce_s,
        seqs if lm_head else 0.0, lf, lb, steps,
    )  # fmt: skip


def decode_work(
    model: ModelProfile,
    tp: int,
    b: float,
    layers: int,
    batch: float,
    context: float,
    kv_replication: float,
    *,
    allreduce_s: float,
    lm_head: bool,
    steps: float,
) -> Work:
    """One decode step of `batch` sequences at mean context `context` through `layers` layers."""
    gf, gb = gemm_counts(model, tp, b, batch)
    af, ab = decode_attention_counts(model, tp, b, batch, batch * context, kv_replication)
    lf, lb = lm_head_counts(model, tp, b, batch) if lm_head else (0.0, 0.0)
    return Work(
        layers, batch, gf, gb, elementwise_bytes(model, tp, b, batch), af, ab, allreduce_s,
        batch if lm_head else 0.0, lf, lb, steps,
    )  # fmt: skip
