"""A fluid upper bound on any plan's throughput (LP relaxation), for tests and benchmarks.

Relax everything discrete: every GPU may split its time between prefill and decode, batches
are unbounded, and networks are free. Per GPU of type t (roofline with the cost model's efficiencies
η_c, η_attn, η_kv of planner.costs.stepmodel; every overhead dropped):
  prefill: p_t = 1 / (GEMM FLOPs per prompt / (peak_t·η_c) + attention FLOPs / (peak_t·η_attn))
  decode:  d_t = min(peak_t·η_c / FLOPs per token, bw_t·η_kv / KV bytes read per token) / tokens
Then   max T  s.t.  T ≤ Σ_t x_t·p_t,  T ≤ Σ_t (n_t − x_t)·d_t,  0 ≤ x_t ≤ n_t,
solved with scipy's HiGHS (`linprog`). No plan the cost model scores can beat it: a real plan
also pays weight reads, communication, memory limits and integrality.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.optimize import linprog

from planner.costs.memory import kv_bytes_per_token_layer
from planner.costs.stepmodel import gpu_factors
from planner.inputs.problem import Cluster


def per_gpu_rates(cluster: Cluster, gpu_key: str) -> tuple[float, float]:
    """(prefill, decode) requests/s one GPU of this type could sustain with nothing but its roofline."""
    model, workload = cluster.model, cluster.workload
    gpu = next(slot.gpu for slot in cluster.gpus if slot.gpu.key == gpu_key)
    f = gpu_factors(gpu, cluster.dtype, 1)
    compute = f.peak_flops * f.eta_compute
    bandwidth = f.bandwidth * f.eta_kv
    layer_params = model.layers * model.params_per_layer
    attention_flops = 2 * model.layers * model.heads * model.head_dim * workload.prompt.second_moment
    prompt_seconds = 2 * layer_params * workload.prompt.mean / compute + attention_flops / (
        f.peak_flops * f.eta_attention
    )
    context = workload.prompt.mean + workload.decode_tokens / 2
    token_flops = 2 * layer_params + 4 * model.layers * context * model.heads * model.head_dim
    token_bytes = context * model.layers * kv_bytes_per_token_layer(cluster)
    tokens_per_s = min(compute / token_flops, bandwidth / token_bytes)
    return 1.0 / prompt_seconds, tokens_per_s / workload.decode_tokens


def fluid_upper_bound(cluster: Cluster) -> float:
    """Requests/s no plan can exceed on this cluster (see module docstring)."""
    counts = Counter(slot.gpu.key for slot in cluster.gpus)
    keys = sorted(counts)
    rates = np.array([per_gpu_rates(cluster, key) for key in keys])
    n = np.array([counts[key] for key in keys], dtype=float)
    m = len(keys)
    # variables: x_1..x_m (GPUs of each type doing prefill), T; maximise T
    objective = np.zeros(m + 1)
    objective[-1] = -1.0
    prefill_row = np.concatenate([-rates[:, 0], [1.0]])  # T − Σ x p ≤ 0
    decode_row = np.concatenate([rates[:, 1], [1.0]])  # T + Σ x d ≤ Σ n d
    result = linprog(
        objective,
        A_ub=np.vstack([prefill_row, decode_row]),
        b_ub=np.array([0.0, float(n @ rates[:, 1])]),
        bounds=[(0.0, float(c)) for c in n] + [(0.0, None)],
        method="highs",
    )
    return float(result.x[-1])
