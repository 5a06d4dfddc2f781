"""planner.costs.calibrate's decisions: which records are fitted together, the error per regime, when a held-out
error is measured (k-fold needs ≥ 2 points a fold) and what the provenance says about each parameter.

Why: test_calibration.py checks a fit's accuracy; a calibration file is also read by people deciding whether
to trust it, so the figures and words it carries are checked here against hand-computed expectations.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from planner.costs.calibrate import Calibrated, Residual, calibrate_allreduce, calibrate_gpu, regime_errors
from planner.costs.predict import predict
from planner.errors import InputError
from planner.inputs.calibrations import AllreduceCalibrationFile, AllreduceRow, Provenance, RegimeError, SourceRef
from planner.inputs.measurements import Measurement

ROW = AllreduceRow(implementation="nccl", tp=2, latency_s=1e-5, bandwidth_bytes_per_s=1e9)


def decode(batch: int, measured: float, **extra) -> Measurement:
    return Measurement(gpu="H100-SXM", model="llama-3.1-8b", tp=1, phase="decode", batch=batch, context=1024,
                       scope="layers", measured_s=measured, **extra)  # fmt: skip


def noisy_records(catalog, n: int, **extra) -> list[Measurement]:
    """n decode records at the model's own prediction × ±20 % (deterministic), so a fit cannot match each."""
    out = []
    for i in range(n):
        case = decode(2 ** (i % 8), 1.0, **extra).model_copy(update={"context": 512 * (1 + i)})
        out.append(case.model_copy(update={"measured_s": predict(case, catalog) * (1.2 if i % 2 else 0.8)}))
    return out


# ----------------------------------------------------------------------------- regimes and residuals


def test_regime_errors_by_hand():
    records = [decode(1, 1.0), decode(2, 2.0), decode(4, 4.0), decode(8, 1.0, lower_bound=True),
               decode(64, 1.0)]  # fmt: skip
    predicted = np.array([1.1234567, 1.6, 4.0, 50.0, 0.5])  # ratios 1.1234567, 0.8, 1.0 | lower bound | 0.5
    errors = regime_errors(records, predicted)
    assert list(errors) == ["decode large batch / long context", "decode small batch"]  # sorted
    small = errors["decode small batch"]
    # |ratio − 1| = 0.1234567, 0.2, 0 → median 0.1234567 → 12.35 %; median ratio 1.0; worst by |ln|: 0.8
    assert small == RegimeError(points=3, median_abs_pct=12.35, median_ratio=1.0, worst_ratio=0.8)
    big = errors["decode large batch / long context"]
    assert big == RegimeError(points=1, median_abs_pct=50.0, median_ratio=0.5, worst_ratio=0.5)
    # worst is the largest |log| either way: 2.0 beats 0.6
    assert regime_errors(records[:2], np.array([0.6, 4.0]))["decode small batch"].worst_ratio == 2.0
    # four-digit ratios
    rounded = regime_errors(records[:1], np.array([1.23456]))["decode small batch"]
    assert (rounded.median_ratio, rounded.worst_ratio) == (1.2346, 1.2346)


def test_residual_ratios_and_the_worst_heldout_error():
    r = Residual(decode(1, 2.0), predicted_s=3.0, heldout_s=1.0)
    assert (r.ratio, r.heldout_ratio) == (1.5, 0.5)
    case = decode(1, 2.0).model_copy(update={"measured_s": None})  # nothing measured: the seconds themselves
    assert (Residual(case, 3.0, 1.0).ratio, Residual(case, 3.0, 1.0).heldout_ratio) == (3.0, 1.0)

    def calibrated(*pcts: float) -> Calibrated:
        errors = {f"r{i}": RegimeError(points=1, median_abs_pct=p, median_ratio=1, worst_ratio=1)
                  for i, p in enumerate(pcts)}  # fmt: skip
        doc = AllreduceCalibrationFile(kind="allreduce", id="x", interconnect="nvlink4", table=[ROW],
                                       provenance=Provenance(heldout_error=errors))  # fmt: skip
        return Calibrated(doc)

    assert calibrated(3.0, 7.5, 1.0).worst_heldout_pct == 7.5
    assert calibrated().worst_heldout_pct == 0.0
    with pytest.raises(FrozenInstanceError):
        r.heldout_s = 0.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        calibrated().residuals = []  # type: ignore[misc]


# ----------------------------------------------------------------------------- GPU calibration


def test_one_gpu_type_at_a_time(catalog):
    records = [decode(1, 1e-3), decode(1, 1e-3).model_copy(update={"gpu": "A100-80G"})]
    with pytest.raises(InputError) as error:
        calibrate_gpu(records, catalog, cal_id="x", sources=[])
    assert error.value.message == "calibrate: the measurements cover GPU types A100-80G, H100-SXM; fit one at a time."


def test_fewer_than_two_points_a_fold_reports_the_fit_error_as_held_out(catalog):
    nine = calibrate_gpu(noisy_records(catalog, 9), catalog, cal_id="x", sources=[])
    assert nine.document.provenance.heldout_error == nine.document.provenance.fit_error
    assert all(r.heldout_s == r.predicted_s for r in nine.residuals)
    ten = calibrate_gpu(noisy_records(catalog, 10), catalog, cal_id="x", sources=[])
    # five folds of two: each point predicted by a fit without it, which its noise did not pull
    assert ten.document.provenance.heldout_error != ten.document.provenance.fit_error
    assert sum(abs(np.log(r.heldout_ratio)) for r in ten.residuals) > sum(abs(np.log(r.ratio)) for r in ten.residuals)


def test_gpu_provenance_names_what_was_fitted_and_where_the_rest_comes_from(catalog):
    records = noisy_records(catalog, 4, excludes=("elementwise", "attention"), engine="vllm", engine_version="0.6",
                            device="H100 80GB HBM3")  # fmt: skip
    sources = [SourceRef(file="a.csv", repository="https://github.com/x/y")]
    cal = calibrate_gpu(
        records, catalog, cal_id="mine", sources=sources, date="2026-01-02", command="hexplan calibrate"
    )
    doc = cal.document
    p = doc.provenance
    assert (doc.gpu, doc.id, doc.engine) == ("H100-SXM", "mine", "vllm")
    assert p.fitted == ["eta_compute", "tokens_half", "eta_memory"]
    where = "the catalogue's efficiency / the module prior (planner.costs.stepmodel)"
    assert p.prior == {"tau_layer_s": where, "eta_attention": where, "eta_kv": where, "tau_attention_s": where,
                       "step_overhead": p.prior["step_overhead"]}  # fmt: skip
    assert p.prior["step_overhead"].startswith("prior, not fitted (no engine-scope points)")
    assert (p.points, p.engine_version, p.hardware, p.sources, p.date, p.command) == (
        4,
        "vllm 0.6",
        "H100 80GB HBM3",
        sources,
        "2026-01-02",
        "hexplan calibrate",
    )
    # the t0 it kept is the prior's: 1 ms at TP 1 rising 0.25 ms a TP doubling
    assert [(r.tp, r.seconds) for r in doc.parameters.step_overhead] == [(1, 1e-3), (2, 1.25e-3), (4, 1.5e-3),
                                                                         (8, 1.75e-3)]  # fmt: skip


def test_engine_scope_points_fit_the_step_overhead_and_a_named_prior_is_cited(catalog):
    records = [r.model_copy(update={"scope": "engine", "tp": 1 + i % 2})
               for i, r in enumerate(noisy_records(catalog, 6, engine="sglang", engine_version="0.4"))]  # fmt: skip
    records += [
        records[0].model_copy(update={"engine": "vllm", "engine_version": "0.6", "device": "d2"}),
        records[1].model_copy(update={"engine": "trt", "engine_version": None}),
    ]  # no version: not listed
    cal = calibrate_gpu(records, catalog, cal_id="x", sources=[], prior_name="h100-old", hardware="8×H100")
    p = cal.document.provenance
    assert "step_overhead" in p.fitted and "step_overhead" not in p.prior
    assert p.fitted == ["eta_compute", "tokens_half", "eta_memory", "tau_layer_s", "eta_kv", "tau_attention_s",
                        "step_overhead"]  # fmt: skip
    assert p.prior == {"eta_attention": "from h100-old"}
    assert (p.engine_version, p.hardware) == ("sglang 0.4; vllm 0.6", "8×H100")
    assert cal.document.engine == "sglang"  # the first engine by name


@pytest.mark.parametrize(
    ("engines", "expected"),
    [((None, None), "vllm"), (("sarathi-serve", None), "vllm"), (("vllm", "sarathi-serve"), "vllm"),
     (("vllm", "sglang"), "sglang")],
)  # fmt: skip
def test_the_calibration_names_the_engine_measured(catalog, engines, expected):
    records = [r.model_copy(update={"engine": engines[i % 2]}) for i, r in enumerate(noisy_records(catalog, 4))]
    assert calibrate_gpu(records, catalog, cal_id="x", sources=[]).document.engine == expected


def test_hardware_lists_every_device_once(catalog):
    records = [
        r.model_copy(update={"device": ("b", "a", None)[i % 3]}) for i, r in enumerate(noisy_records(catalog, 4))
    ]
    assert calibrate_gpu(records, catalog, cal_id="x", sources=[]).document.provenance.hardware == "a, b"


# ----------------------------------------------------------------------------- all-reduce calibration


def ar(nbytes: int, engine: str | None = "nccl", link: str = "nvlink4", scale: float = 1.0) -> Measurement:
    return Measurement(phase="allreduce", tp=2, bytes=nbytes, interconnect=link, engine=engine,
                       measured_s=scale * (8e-6 + nbytes / 100e9))  # fmt: skip


def test_one_link_at_a_time(catalog):
    with pytest.raises(InputError) as error:
        calibrate_allreduce([ar(1024), ar(2048, link="pcie4")], catalog, cal_id="x", sources=[])
    assert error.value.message == ("calibrate: the all-reduce measurements cover links nvlink4, pcie4; "
                                   "fit one at a time.")  # fmt: skip


def test_allreduce_calibration_fits_each_implementation_and_holds_out_from_ten_points(catalog):
    # NCCL and a 3× slower custom implementation, exact: every point predicted from its own implementation's row
    records = [ar(2 ** (10 + i)) for i in range(4)] + [ar(2 ** (10 + i), "custom", scale=3.0) for i in range(4)]
    cal = calibrate_allreduce(records, catalog, cal_id="ar", sources=[], hardware="hgx")
    doc = cal.document
    assert (doc.interconnect, doc.provenance.fitted, doc.provenance.hardware) == (
        "nvlink4",
        ["latency_s", "bandwidth_bytes_per_s"],
        "hgx",
    )
    assert [r.ratio for r in cal.residuals] == pytest.approx([1.0] * 8, rel=1e-3)
    # nine noisy points: too few for five folds of two, so the held-out figures are the fit's
    nine = calibrate_allreduce([ar(2 ** (10 + i), scale=(1.3 if i % 2 else 0.7)) for i in range(9)], catalog,
                               cal_id="ar", sources=[])  # fmt: skip
    assert all(r.heldout_s == r.predicted_s for r in nine.residuals)
    assert nine.document.provenance.heldout_error == nine.document.provenance.fit_error
    # ten noisy points: each predicted by a fit without it
    noisy = [ar(2 ** (10 + i), scale=(1.3 if i % 2 else 0.7)) for i in range(10)]
    held = calibrate_allreduce(noisy, catalog, cal_id="ar", sources=[])
    assert held.document.provenance.heldout_error != held.document.provenance.fit_error
    assert any(abs(r.heldout_s - r.predicted_s) > 1e-3 * r.predicted_s for r in held.residuals)


def test_a_given_prior_fills_what_the_records_cannot_identify(catalog):
    from planner.inputs.calibrations import GpuParameters, StepOverhead

    prior = GpuParameters(
        eta_compute=0.5, tokens_half=8.0, eta_memory=0.6, tau_layer_s=4e-5, eta_attention=0.33, eta_kv=0.44,
        tau_attention_s=5e-5, step_overhead=[StepOverhead(tp=1, seconds=2e-3)],
    )  # fmt: skip
    records = noisy_records(catalog, 4, excludes=("elementwise", "attention"))
    p = calibrate_gpu(records, catalog, cal_id="x", sources=[], prior=prior, prior_name="mine").document.parameters
    assert (p.tau_layer_s, p.eta_attention, p.eta_kv, p.tau_attention_s) == (4e-5, 0.33, 0.44, 5e-5)
    assert [r.seconds for r in p.step_overhead] == [2e-3] * 4  # one row: t0 flat over TP
