"""planner.costs.fit on hand-built cases whose least-squares answer is known in closed form.

Why: test_calibration.py checks that a realistic fit recovers a truth within a few percent, which says
little about each bound, each term or the fold split. Here every case isolates one parameter: a `Work`
whose only non-zero term is, say, the GEMM weight bytes predicts bytes / (B·η_m), so minimising
Σ ln²(predicted / measured) gives η_m = the geometric mean of bytes / (B·measured), clipped to
GPU_BOUNDS — written down by hand in each test. All-reduce cases do the same for t = α + bytes/β.
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from planner.costs import fit
from planner.costs.fit import Stacked
from planner.costs.stepmodel import Work
from planner.inputs.calibrations import GpuParameters, StepOverhead
from planner.inputs.measurements import Measurement

PEAK, BANDWIDTH = 1e15, 2e12
PRIOR = {
    "eta_compute": 0.5, "tokens_half": 0.0, "eta_memory": 0.5, "tau_layer_s": 0.0, "eta_attention": 0.5,
    "eta_kv": 0.5, "tau_attention_s": 0.0, "t0_s": 0.0, "t0_slope_s": 0.0,
}  # fmt: skip


def one_term(n: int, measured, *, tp=None, lower=None, **work) -> Stacked:
    """n records of one layer whose only work is `work` (every other count 0, weights of excluded terms 0)."""
    counts = dict(layers=1.0, tokens=1.0, gemm_flops=0.0, gemm_bytes=0.0, elem_bytes=0.0, attn_flops=0.0,
                  attn_bytes=0.0, w_elementwise=0.0, w_attention=0.0)  # fmt: skip
    counts.update(work)
    arrays = {k: np.broadcast_to(np.asarray(v, float), (n,)).copy() for k, v in counts.items()}
    return Stacked(
        Work(**arrays),
        np.asarray(measured, float),
        np.zeros(n, bool) if lower is None else np.asarray(lower, bool),
        np.ones(n) if tp is None else np.asarray(tp, float),
        np.full(n, PEAK),
        BANDWIDTH,
    )


def geomean(values) -> float:
    return float(np.exp(np.mean(np.log(values))))


# ----------------------------------------------------------------------------- one parameter at a time


def test_memory_efficiency_is_the_geometric_mean_of_what_each_record_implies():
    # record i moves b_i bytes in m_i seconds: it alone implies η_m = b_i / (B·m_i) = 0.2, 0.4, 0.8
    nbytes = np.array([1e9, 2e9, 4e9])
    measured = nbytes / (BANDWIDTH * np.array([0.2, 0.4, 0.8]))
    values = fit.fit_gpu(one_term(3, measured, gemm_bytes=nbytes), ["eta_memory"], PRIOR)
    assert values["eta_memory"] == pytest.approx(geomean([0.2, 0.4, 0.8]), rel=1e-5)  # 0.4
    others = {k: v for k, v in values.items() if k != "eta_memory"}
    assert others == {k: v for k, v in PRIOR.items() if k != "eta_memory"}


@pytest.mark.parametrize(
    ("name", "work", "implied", "bound"),
    [
        # every η lies in [0.02, 1]: records implying 1.5–3 (faster than the roofline) clip to 1,
        # records implying 0.005–0.01 clip to 0.02
        ("eta_memory", "gemm_bytes", [1.5, 3.0], 1.0),
        ("eta_memory", "gemm_bytes", [0.005, 0.01], 0.02),
        ("eta_compute", "gemm_flops", [1.5, 3.0], 1.0),
        ("eta_compute", "gemm_flops", [0.005, 0.01], 0.02),
        ("eta_attention", "attn_flops", [1.5, 3.0], 1.0),
        ("eta_attention", "attn_flops", [0.005, 0.01], 0.02),
        ("eta_kv", "attn_bytes", [1.5, 3.0], 1.0),
        ("eta_kv", "attn_bytes", [0.005, 0.01], 0.02),
    ],
)
def test_efficiencies_stay_within_their_bounds(name, work, implied, bound):
    amount = np.array([1e12, 2e12])
    rate = PEAK if work.endswith("flops") else BANDWIDTH
    measured = amount / (rate * np.array(implied))
    extra = {"w_attention": 1.0} if work.startswith("attn") else {}
    values = fit.fit_gpu(one_term(2, measured, **{work: amount}, **extra), [name], PRIOR)
    assert values[name] == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize(("name", "work"), [("eta_compute", "gemm_flops"), ("eta_attention", "attn_flops"),
                                            ("eta_kv", "attn_bytes")])  # fmt: skip
def test_each_efficiency_divides_its_own_term(name, work):
    amount = np.array([1e12, 3e12])
    rate = PEAK if work.endswith("flops") else BANDWIDTH
    measured = amount / (rate * np.array([0.3, 0.6]))
    extra = {"w_attention": 1.0} if work.startswith("attn") else {}
    values = fit.fit_gpu(one_term(2, measured, **{work: amount}, **extra), [name], PRIOR)
    assert values[name] == pytest.approx(math.sqrt(0.3 * 0.6), rel=1e-5)


def test_tokens_half_is_fitted_from_how_small_gemms_slow_down_and_is_capped_at_4096():
    # compute-bound GEMM of m rows at η_c = 0.5: t = F·(m + m½)/(m·π·0.5); records made with m½ = 64
    m = np.array([16.0, 64.0, 1024.0])
    flops = 1e12 * m
    measured = flops * (m + 64) / (m * PEAK * 0.5)
    start = PRIOR | {"tokens_half": 10.0}  # (from a start at exactly 0 the optimiser does not move: see report)
    values = fit.fit_gpu(one_term(3, measured, tokens=m, gemm_flops=flops), ["tokens_half"], start)
    assert values["tokens_half"] == pytest.approx(64.0, rel=1e-5)
    slow = flops * (m + 20000) / (m * PEAK * 0.5)  # m½ = 20000 lies beyond the bound 4096
    assert fit.fit_gpu(one_term(3, slow, tokens=m, gemm_flops=flops), ["tokens_half"], start)[
        "tokens_half"
    ] == pytest.approx(4096.0, rel=1e-6)
    fast = flops / (PEAK * 0.5) / 2  # twice as fast as m½ = 0 allows: m½ stops at its bound 0
    assert fit.fit_gpu(one_term(3, fast, tokens=m, gemm_flops=flops), ["tokens_half"], start)[
        "tokens_half"
    ] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("name", "weight"), [("tau_layer_s", "w_elementwise"), ("tau_attention_s", "w_attention")])
def test_per_layer_overheads_are_fitted_in_seconds_between_0_and_2_ms(name, weight):
    layers = np.array([10.0, 40.0])
    # each layer costs exactly τ (no bytes, no FLOPs): t = layers·τ
    for tau, expected in ((300e-6, 300e-6), (7e-3, 2e-3)):
        s = one_term(2, layers * tau, layers=layers, **{weight: 1.0})
        assert fit.fit_gpu(s, [name], PRIOR)[name] == pytest.approx(expected, rel=1e-5)
    # a memory-bound term already takes the whole measured time: the overhead stops at 0
    s = one_term(2, layers * 1e-3, layers=layers, gemm_bytes=1e-3 * BANDWIDTH * 0.5 * 1.5, **{weight: 1.0})
    assert fit.fit_gpu(s, [name], PRIOR)[name] == pytest.approx(0.0, abs=1e-9)


def test_step_overhead_is_an_intercept_plus_a_slope_per_tp_doubling():
    # engine steps with no other work: t = t0 + slope·log2(tp); truth t0 = 3 ms, slope = 0.4 ms
    tp = np.array([1.0, 2.0, 4.0, 8.0])
    measured = 3e-3 + 0.4e-3 * np.log2(tp)
    s = one_term(4, measured, tp=tp, steps=1.0, layers=0.0)
    values = fit.fit_gpu(s, ["t0_s", "t0_slope_s"], PRIOR)
    assert values["t0_s"] == pytest.approx(3e-3, rel=1e-5)
    assert values["t0_slope_s"] == pytest.approx(0.4e-3, rel=1e-4)
    # bounds: t0 ≤ 100 ms, slope ≤ 50 ms a doubling, both ≥ 0
    big = one_term(4, 0.3 + 0.08 * np.log2(tp), tp=tp, steps=1.0, layers=0.0)
    values = fit.fit_gpu(big, ["t0_s", "t0_slope_s"], PRIOR)
    assert (values["t0_s"], values["t0_slope_s"]) == pytest.approx((0.1, 0.05), rel=1e-5)
    falling = one_term(4, 5e-3 / (1 + np.log2(tp)), tp=tp, steps=1.0, layers=0.0)
    assert fit.fit_gpu(falling, ["t0_s", "t0_slope_s"], PRIOR)["t0_slope_s"] == pytest.approx(0.0, abs=1e-9)


def test_a_start_outside_the_bounds_is_moved_inside():
    # a prior η of 1.5 (impossible) or an overhead prior of −1 s must not stop the fit
    nbytes = np.array([1e9, 2e9])
    measured = nbytes / (BANDWIDTH * 0.25)
    prior = PRIOR | {"eta_memory": 1.5, "tau_layer_s": -1.0}
    values = fit.fit_gpu(one_term(2, measured, gemm_bytes=nbytes), ["eta_memory", "tau_layer_s"], prior)
    assert values["eta_memory"] == pytest.approx(0.25, rel=1e-5)
    assert 0.0 <= values["tau_layer_s"] < 1e-12  # no record has the term (weight 0): it stays at its lowest start


# ----------------------------------------------------------------------------- residuals and lower bounds


def test_log_residuals_are_relative_and_one_sided_for_lower_bounds():
    predicted = np.array([2.0, 0.5, 2.0, 0.5])
    measured = np.ones(4)
    lower = np.array([False, False, True, True])
    r = fit.log_residuals(predicted, measured, lower)
    # a lower bound (truth ≥ measured) costs only when predicted below it
    assert r == pytest.approx([math.log(2), -math.log(2), 0.0, -math.log(2)])


def test_a_lower_bound_record_only_pulls_the_prediction_up():
    nbytes = np.array([1e9, 1e9, 1e9])
    measured = nbytes / (BANDWIDTH * np.array([0.5, 0.5, 0.9]))
    # the third point (η 0.9 alone) as a lower bound: the truth is slower still, so the 0.5 points decide
    s = one_term(3, measured, gemm_bytes=nbytes, lower=[False, False, True])
    assert fit.fit_gpu(s, ["eta_memory"], PRIOR)["eta_memory"] == pytest.approx(0.5, rel=1e-5)
    # a lower bound above the others' prediction (η 0.1 alone) pulls η down to meet it
    measured[2] = nbytes[2] / (BANDWIDTH * 0.1)
    s = one_term(3, measured, gemm_bytes=nbytes, lower=[False, False, True])
    assert fit.fit_gpu(s, ["eta_memory"], PRIOR)["eta_memory"] < 0.4


# ----------------------------------------------------------------------------- prior, table, rounding


def params(table) -> GpuParameters:
    return GpuParameters(
        eta_compute=0.6, tokens_half=20.0, eta_memory=0.7, tau_layer_s=3e-5, eta_attention=0.4, eta_kv=0.8,
        tau_attention_s=2e-5, step_overhead=[StepOverhead(tp=tp, seconds=s) for tp, s in table],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("table", "t0", "slope"),
    [
        ([(1, 1e-3), (8, 1.75e-3)], 1e-3, 0.25e-3),  # (1.75 − 1) ms over 3 doublings
        ([(8, 1.75e-3), (1, 1e-3), (4, 9e-3)], 1e-3, 0.25e-3),  # TP 1 and 8 decide, in any order
        ([(1, 2e-3), (8, 1e-3)], 2e-3, 0.0),  # falling overhead: no negative slope
        ([(1, 2e-3), (4, 3e-3)], 2e-3, 0.0),  # no TP 8 row: no slope
        ([(2, 3e-3), (8, 6e-3)], 3e-3, 0.0),  # no TP 1 row: the smallest row's seconds, no slope
        ([(4, 3e-3), (2, 5e-3)], 3e-3, 0.0),
    ],
)
def test_the_prior_vector_reads_t0_and_its_slope_from_the_step_overhead_table(table, t0, slope):
    values = fit.prior_vector(params(table))
    assert values["t0_s"] == pytest.approx(t0)
    assert values["t0_slope_s"] == pytest.approx(slope, abs=1e-12)
    assert (values["eta_compute"], values["tokens_half"], values["tau_attention_s"]) == (0.6, 20.0, 2e-5)


def test_parameters_carry_an_overhead_row_for_each_tp_size_and_six_digits():
    values = PRIOR | {"eta_compute": 0.123456789, "tau_layer_s": 3.14159265e-5, "t0_s": 1e-3, "t0_slope_s": 0.25e-3}
    p = fit.to_parameters(values)
    # the planner's TP sizes 1, 2, 4, 8: t0 + slope·log2(tp) = 1, 1.25, 1.5, 1.75 ms
    assert [(r.tp, r.seconds) for r in p.step_overhead] == [(1, 1e-3), (2, 1.25e-3), (4, 1.5e-3), (8, 1.75e-3)]
    assert (p.eta_compute, p.tau_layer_s) == (0.123457, 3.14159e-5)
    assert fit.sig(987654321.0) == 987654000.0 and fit.sig(-0.000123456789) == -0.000123457


def test_stacked_predictions_add_the_step_overhead_of_each_records_tp():
    # the same work at TP 1, 2, 4, 8: engine scope pays t0 + slope·log2(tp) on top, layers scope nothing
    tp = np.array([1.0, 2.0, 4.0, 8.0])
    s = one_term(4, np.ones(4), tp=tp, gemm_bytes=1e9, steps=1.0)
    base = fit.predict_stacked(PRIOR, s)
    with_t0 = fit.predict_stacked(PRIOR | {"t0_s": 2e-3, "t0_slope_s": 0.5e-3}, s)
    assert with_t0 - base == pytest.approx([2e-3, 2.5e-3, 3e-3, 3.5e-3])
    assert base == pytest.approx(np.full(4, 1e9 / (BANDWIDTH * 0.5)))


# ----------------------------------------------------------------------------- what the records identify


def case(phase="decode", tp=1, scope="layers", excludes=()) -> Measurement:
    extra = {"tokens": 128} if phase == "prefill" else {"context": 512}
    return Measurement(gpu="H100-SXM", model="llama-3.1-8b", tp=tp, phase=phase, batch=1, scope=scope,
                       excludes=excludes, measured_s=1e-3, **extra)  # fmt: skip


BASE = ["eta_compute", "tokens_half", "eta_memory"]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([case(excludes=("elementwise", "attention"))], BASE),
        ([case(excludes=("elementwise", "attention")), case(excludes=("attention",))], [*BASE, "tau_layer_s"]),
        ([case("prefill", excludes=("elementwise",))], [*BASE, "eta_attention", "tau_attention_s"]),
        ([case("decode", excludes=("elementwise",))], [*BASE, "eta_kv", "tau_attention_s"]),
        ([case("prefill", excludes=("elementwise",)), case("decode", excludes=("elementwise",))],
         [*BASE, "eta_attention", "eta_kv", "tau_attention_s"]),
        ([case("prefill", excludes=("attention",)), case("decode", excludes=("elementwise",))],
         [*BASE, "tau_layer_s", "eta_kv", "tau_attention_s"]),
        ([case(scope="engine", excludes=("elementwise", "attention"))], [*BASE, "t0_s"]),
        ([case(scope=None, tp=2, excludes=("elementwise", "attention")), case(tp=4, excludes=("elementwise",
          "attention"))], [*BASE, "t0_s"]),  # only engine-scope TPs count: one TP, no slope
        ([case(scope="engine", excludes=("elementwise", "attention")),
          case(scope="engine", tp=2, excludes=("elementwise", "attention"))], [*BASE, "t0_s", "t0_slope_s"]),
    ],
)  # fmt: skip
def test_only_parameters_some_record_measures_are_fitted(records, expected):
    assert fit.identifiable(records) == expected


# ----------------------------------------------------------------------------- folds


@pytest.mark.parametrize("n", [3, 10, 12, 23])
def test_folds_split_the_records_into_disjoint_parts_of_near_equal_size(n):
    parts = fit.folds(n)
    assert len(parts) == min(5, n)  # five folds, or one record each when fewer
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all((np.diff(p) > 0).all() for p in parts)  # each fold in ascending order


def test_heldout_predictions_come_from_fits_without_the_records_own_fold():
    # ten records each implying its own η_m (0.1 … 0.9 spread, distinct); a record's held-out prediction is
    # its bytes over B·(geometric mean of the η of the records outside its fold)
    implied = np.array([0.1, 0.15, 0.2, 0.3, 0.35, 0.45, 0.5, 0.6, 0.75, 0.9])
    nbytes = np.full(10, 1e9)
    s = one_term(10, nbytes / (BANDWIDTH * implied), gemm_bytes=nbytes)
    held = fit.heldout_gpu(s, ["eta_memory"], PRIOR)
    parts = fit.folds(10)
    assert len(parts) == 5
    for part in parts:
        others = np.setdiff1d(np.arange(10), part)
        for i in part:
            assert held[i] == pytest.approx(1e9 / (BANDWIDTH * geomean(implied[others])), rel=1e-5)


# ----------------------------------------------------------------------------- all-reduce


def test_an_allreduce_group_recovers_alpha_and_beta():
    nbytes = np.array([1e3, 1e5, 1e7, 1e9])
    measured = 20e-6 + nbytes / 80e9
    alpha, beta = fit.fit_allreduce_group(nbytes, measured, np.zeros(4, bool), 200e9)
    assert alpha == pytest.approx(20e-6, rel=1e-4) and beta == pytest.approx(80e9, rel=1e-4)


def test_allreduce_alpha_and_beta_stay_within_bounds():
    nbytes = np.array([1e3, 1e5, 1e7, 1e9])
    none = np.zeros(4, bool)
    # faster than the link allows: β stops at max_bw
    _, beta = fit.fit_allreduce_group(nbytes, 5e-6 + nbytes / 400e9, none, 100e9)
    assert beta == pytest.approx(100e9, rel=1e-6)
    # no latency at all: α stops at 0 (not 1 µs)
    alpha, _ = fit.fit_allreduce_group(nbytes, nbytes / 50e9, none, 100e9)
    assert alpha == pytest.approx(0.0, abs=1e-9)
    # a latency of 30 ms: α stops at 10 ms
    alpha, _ = fit.fit_allreduce_group(nbytes, 30e-3 + nbytes / 50e9, none, 100e9)
    assert alpha == pytest.approx(10e-3, rel=1e-6)
    # a crawl of 100 B/s: β stops at 1 kB/s
    _, beta = fit.fit_allreduce_group(nbytes, 1e-5 + nbytes / 100.0, none, 100e9)
    assert beta == pytest.approx(1e3, rel=1e-6)


@pytest.mark.parametrize(
    ("nbytes", "band"),
    [(1, 0), (2**16 - 1, 0), (2**16, 2**16), (2**20 - 1, 2**16), (2**20, 2**20), (2**24 - 1, 2**20),
     (2**24, 2**24), (2**34, 2**24)],
)  # fmt: skip
def test_size_bands_start_at_64_kib_1_mib_and_16_mib(nbytes, band):
    assert fit.size_band(nbytes) == band


def ar(nbytes, tp=2, engine="nccl", alpha=10e-6, beta=50e9) -> Measurement:
    return Measurement(phase="allreduce", tp=tp, bytes=nbytes, interconnect="nvlink4", engine=engine,
                       measured_s=alpha + nbytes / beta)  # fmt: skip


def bands(rows) -> list[tuple[str, int, int]]:
    return [(r.implementation, r.tp, r.min_bytes) for r in rows]


def test_allreduce_rows_per_implementation_tp_and_band():
    records = [ar(2**10), ar(2**12), ar(2**17), ar(2**18), ar(2**10, tp=4), ar(2**12, tp=4), ar(2**10, engine=None),
               ar(2**11, engine=None), ar(2**10, engine="vllm"), ar(2**11, engine="vllm")]  # fmt: skip
    rows = fit.fit_allreduce(records, 100e9)
    # no engine named: NCCL
    assert bands(rows) == [("nccl", 2, 0), ("nccl", 2, 2**16), ("nccl", 4, 0), ("vllm", 2, 0)]
    assert rows[0].latency_s == pytest.approx(10e-6, rel=1e-3)
    assert rows[0].bandwidth_bytes_per_s == pytest.approx(50e9, rel=1e-3)


def test_a_band_with_one_point_joins_the_band_below():
    # band 1 MiB has one point: it joins 64 KiB, which then has two; 0 keeps its own two
    records = [ar(2**10), ar(2**12), ar(2**17), ar(2**21)]
    rows = fit.fit_allreduce(records, 100e9)
    assert bands(rows) == [("nccl", 2, 0), ("nccl", 2, 2**16)]
    # two exact points per row: each row recovers the truth (one point alone could not)
    assert [r.latency_s for r in rows] == pytest.approx([10e-6] * 2, rel=1e-3)
    assert [r.bandwidth_bytes_per_s for r in rows] == pytest.approx([50e9] * 2, rel=1e-3)
    # a lone point in the lowest band stays (there is nothing below)
    records = [ar(2**10), ar(2**17), ar(2**18)]
    assert bands(fit.fit_allreduce(records, 100e9)) == [("nccl", 2, 0), ("nccl", 2, 2**16)]


def test_allreduce_bandwidth_is_capped_at_the_link_times_tp_over_tp_minus_one():
    # measured as if β were 1 TB/s on a 100 GB/s link: the cap is 100·tp/(tp−1) GB/s
    records = [ar(n, tp=tp, beta=1e12, alpha=1e-6) for tp in (2, 4) for n in (2**10, 2**12)]
    rows = fit.fit_allreduce(records, 100e9)
    assert [r.bandwidth_bytes_per_s for r in rows] == pytest.approx([200e9, 400e9 / 3], rel=1e-5)


def test_stacking_records_keeps_each_records_work_and_order(catalog):
    from planner.costs.predict import case_work, resolve

    records = [case(tp=2, excludes=("attention",)), case("prefill", tp=1, scope="engine"),
               case(tp=4).model_copy(update={"lower_bound": True, "measured_s": 3e-3})]  # fmt: skip
    s = fit.stack(records, catalog)
    for i, rec in enumerate(records):
        w = case_work(rec, resolve(rec, catalog, "case"))
        assert [float(getattr(s.work, name)[i]) for name in ("gemm_flops", "attn_bytes", "w_attention", "steps")] == [
            w.gemm_flops, w.attn_bytes, w.w_attention, w.steps]  # fmt: skip
    assert s.measured.tolist() == [1e-3, 1e-3, 3e-3] and s.lower.tolist() == [False, False, True]
    assert s.tp.tolist() == [2, 1, 4] and s.peak.tolist() == [989.4e12] * 3 and s.bandwidth == 3350e9  # H100 fp16
    part = s.take(np.array([2, 0]))
    assert part.tp.tolist() == [4, 2] and part.work.gemm_flops.tolist() == [s.work.gemm_flops[2], s.work.gemm_flops[0]]
    with pytest.raises(FrozenInstanceError):
        s.bandwidth = 1.0  # type: ignore[misc]
