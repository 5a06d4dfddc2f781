"""Fit the step model's factors to measurements: scipy.optimize.least_squares in log space, with bounds.

Objective: minimise Σ_i r_i² with r_i = ln(predicted_i / measured_i) — relative error, so a 50 µs
all-reduce and a 2 s prefill count alike. A `lower_bound` measurement (truth ≥ measured) is one-sided:
r_i = min(0, r_i), so only predicting *below* it costs. Bounds: every efficiency in (0.02, 1], every
overhead ≥ 0, and all-reduce bandwidth β ≤ link bandwidth · tp/(tp−1), which keeps every prediction at
or above the physical roofline. Parameters the data cannot identify (no record includes their term)
stay at their prior and are listed as such in the calibration's provenance.

GPU fit: θ = (η_c, m½, η_m, τ_layer, η_attn, η_kv, τ_attn[, t0 intercept, t0 slope per TP doubling]) for
one GPU type; each record's work is stacked into numpy arrays once (planner.costs.stepmodel works on
arrays), so one evaluation of all residuals costs microseconds. All-reduce fit: (α, β) per
(implementation, tp) group of one link. Held-out error: k-fold over records (seeded), per regime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from scipy.optimize import least_squares

from planner.costs.predict import case_factors, case_work, resolve
from planner.costs.stepmodel import Factors, Work, seconds
from planner.inputs.calibrations import AllreduceRow, GpuParameters, StepOverhead
from planner.inputs.catalog import Catalog
from planner.inputs.measurements import Measurement

# name, lower, upper, scale (the optimiser works in scaled units: µs for overheads)
GPU_BOUNDS = {
    "eta_compute": (0.02, 1.0, 1.0),
    "tokens_half": (0.0, 4096.0, 100.0),
    "eta_memory": (0.02, 1.0, 1.0),
    "tau_layer_s": (0.0, 2e-3, 1e-6),
    "eta_attention": (0.02, 1.0, 1.0),
    "eta_kv": (0.02, 1.0, 1.0),
    "tau_attention_s": (0.0, 2e-3, 1e-6),
    "t0_s": (0.0, 0.1, 1e-3),
    "t0_slope_s": (0.0, 0.05, 1e-3),
}
TP_TABLE = (1, 2, 4, 8)
ALLREDUCE_BANDS = (0, 2**16, 2**20, 2**24)  # message-size bands, each with its own (α, β): 64 KiB, 1 MiB, 16 MiB
FOLDS = 5


@dataclass(frozen=True)
class Stacked:
    """Records of one GPU type as arrays: work, measured seconds, lower-bound mask, TP."""

    work: Work
    measured: np.ndarray
    lower: np.ndarray
    tp: np.ndarray
    peak: np.ndarray
    bandwidth: float

    def take(self, index: np.ndarray) -> Stacked:
        work = Work(**{f.name: _take(getattr(self.work, f.name), index) for f in fields(Work)})
        return Stacked(work, self.measured[index], self.lower[index], self.tp[index], self.peak[index], self.bandwidth)


def _take(value, index: np.ndarray):
    return value[index] if isinstance(value, np.ndarray) else value


def stack(records: Sequence[Measurement], catalog: Catalog) -> Stacked:
    """The records' work counts as arrays (all records must be prefill/decode of one GPU type)."""
    works, peaks = [], []
    gpu = None
    for i, rec in enumerate(records):
        r = resolve(rec, catalog, f"measurement {i + 1}")
        gpu = r.gpu
        works.append(case_work(rec, r))
        peaks.append(case_factors(rec, r).peak_flops)
    assert gpu is not None
    arrays = {f.name: np.array([float(getattr(w, f.name)) for w in works]) for f in fields(Work)}
    measured = np.array([rec.measured_s for rec in records], dtype=float)
    lower = np.array([rec.lower_bound for rec in records])
    return Stacked(
        Work(**arrays), measured, lower, np.array([r.tp for r in records], float), np.array(peaks), gpu.memory_bandwidth
    )


def identifiable(records: Sequence[Measurement]) -> list[str]:
    """The GPU parameters these records can determine (the rest keep their prior)."""
    free = ["eta_compute", "tokens_half", "eta_memory"]
    if any("elementwise" not in r.excludes for r in records):
        free.append("tau_layer_s")
    with_attention = [r for r in records if "attention" not in r.excludes]
    if any(r.phase == "prefill" for r in with_attention):
        free.append("eta_attention")
    if any(r.phase == "decode" for r in with_attention):
        free.append("eta_kv")
    if with_attention:
        free.append("tau_attention_s")
    engine_tps = {r.tp for r in records if r.effective_scope == "engine"}
    if engine_tps:
        free.append("t0_s")
    if len(engine_tps) > 1:
        free.append("t0_slope_s")
    return free


def prior_vector(prior: GpuParameters) -> dict[str, float]:
    values = {name: float(getattr(prior, name)) for name in GPU_BOUNDS if hasattr(prior, name)}
    t0 = {row.tp: row.seconds for row in prior.step_overhead}
    values["t0_s"] = t0.get(1, min(t0.values()))
    slope = (t0[8] - t0[1]) / 3 if 1 in t0 and 8 in t0 else 0.0
    values["t0_slope_s"] = max(slope, 0.0)
    return values


def factors_of(values: dict[str, float], s: Stacked) -> Factors:
    t0 = values["t0_s"] + values["t0_slope_s"] * np.log2(s.tp)
    return Factors(
        s.peak, s.bandwidth, values["eta_compute"], values["tokens_half"], values["eta_memory"],
        values["tau_layer_s"], values["eta_attention"], values["eta_kv"], values["tau_attention_s"], t0,
    )  # fmt: skip


def predict_stacked(values: dict[str, float], s: Stacked) -> np.ndarray:
    return np.asarray(seconds(factors_of(values, s), s.work, np.maximum), dtype=float)


def log_residuals(predicted: np.ndarray, measured: np.ndarray, lower: np.ndarray) -> np.ndarray:
    r = np.log(predicted) - np.log(measured)
    return np.where(lower, np.minimum(r, 0.0), r)


def fit_gpu(s: Stacked, free: list[str], prior: dict[str, float]) -> dict[str, float]:
    """The least-squares values of the `free` parameters (others at `prior`), all within GPU_BOUNDS."""
    scale = np.array([GPU_BOUNDS[n][2] for n in free])
    lo = np.array([GPU_BOUNDS[n][0] for n in free]) / scale
    hi = np.array([GPU_BOUNDS[n][1] for n in free]) / scale
    x0 = np.clip(np.array([prior[n] for n in free]) / scale, lo + 1e-9, hi - 1e-9)

    def values_at(x: np.ndarray) -> dict[str, float]:
        return prior | {n: float(v) for n, v in zip(free, x * scale)}

    def residuals(x: np.ndarray) -> np.ndarray:
        return log_residuals(predict_stacked(values_at(x), s), s.measured, s.lower)

    result = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=400)
    return values_at(result.x)


def to_parameters(values: dict[str, float]) -> GpuParameters:
    table = [StepOverhead(tp=tp, seconds=sig(values["t0_s"] + values["t0_slope_s"] * np.log2(tp))) for tp in TP_TABLE]
    kept = {n: sig(values[n]) for n in GpuParameters.model_fields if n != "step_overhead"}
    return GpuParameters(**kept, step_overhead=table)


def folds(n: int, k: int = FOLDS, seed: int = 0) -> list[np.ndarray]:
    """k disjoint test index sets covering 0..n−1 (seeded shuffle)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, min(k, n))]


def heldout_gpu(s: Stacked, free: list[str], prior: dict[str, float], k: int = FOLDS) -> np.ndarray:
    """Predicted seconds of every record from a fit that did not see it (k-fold)."""
    predicted = np.empty(len(s.measured))
    for test in folds(len(s.measured), k):
        train = np.setdiff1d(np.arange(len(s.measured)), test)
        values = fit_gpu(s.take(train), free, prior)
        predicted[test] = predict_stacked(values, s.take(test))
    return predicted


# ----------------------------------------------------------------------------- all-reduce


def fit_allreduce_group(
    nbytes: np.ndarray, measured: np.ndarray, lower: np.ndarray, max_bw: float
) -> tuple[float, float]:
    """(α seconds, β bytes/s) of t = α + bytes/β for one (implementation, tp), β ≤ max_bw."""
    alpha0 = float(np.min(measured)) * 0.5
    beta0 = min(float(np.max(nbytes / measured)), max_bw * 0.99)
    lo, hi = np.array([0.0, 1e-6]), np.array([1e4, max_bw / 1e9])  # α in µs, β in GB/s

    def residuals(x: np.ndarray) -> np.ndarray:
        return log_residuals(x[0] * 1e-6 + nbytes / (x[1] * 1e9), measured, lower)

    x0 = np.clip([alpha0 * 1e6, beta0 / 1e9], lo + 1e-9, hi - 1e-9)
    result = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=400)
    return float(result.x[0] * 1e-6), float(result.x[1] * 1e9)


def fit_allreduce(records: Sequence[Measurement], link_bandwidth: float) -> list[AllreduceRow]:
    """One table row per (implementation, tp, size band) of the records (one link); implementation =
    record.engine. A band with fewer than 2 points joins the band below it."""
    groups: dict[tuple[str, int, int], list[Measurement]] = {}
    for r in records:
        groups.setdefault((r.engine or "nccl", r.tp, size_band(float(r.bytes or 0))), []).append(r)
    for impl, tp, band in sorted(groups, reverse=True):
        if len(groups[(impl, tp, band)]) < 2 and band > 0:
            lower = max(b for b in ALLREDUCE_BANDS if b < band)
            groups.setdefault((impl, tp, lower), []).extend(groups.pop((impl, tp, band)))
    rows = []
    for (impl, tp, band), group in sorted(groups.items()):
        nbytes = np.array([float(r.bytes or 0) for r in group])
        measured = np.array([r.measured_s for r in group], dtype=float)
        lower = np.array([r.lower_bound for r in group])
        max_bw = link_bandwidth * tp / (tp - 1)
        alpha, beta = fit_allreduce_group(nbytes, measured, lower, max_bw)
        rows.append(
            AllreduceRow(
                implementation=impl, tp=tp, min_bytes=band, latency_s=sig(alpha), bandwidth_bytes_per_s=sig(beta)
            )
        )
    return rows


def size_band(nbytes: float) -> int:
    return max(b for b in ALLREDUCE_BANDS if b <= nbytes)


def sig(value: float) -> float:
    """6 significant digits: calibration files are read by people and diffed."""
    return float(f"{value:.6g}")
