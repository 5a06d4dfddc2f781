"""Model form v2's fit and calibration files: truth recovery, bounds, measured all-reduce, file errors, staleness."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from planner.costs.allreduce import allreduce_seconds
from planner.costs.calibrate import calibrate_allreduce, calibrate_gpu
from planner.costs.predict import predict
from planner.costs.usage import uncalibrated_gpu_types
from planner.errors import InputError
from planner.inputs.calibrations import AllreduceCalibration, AllreduceRow, GpuParameters, StepOverhead
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.measurements import Measurement

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CALIBRATIONS = Path(__file__).resolve().parents[1] / "profiles" / "calibrations"

TRUTH = GpuParameters(
    eta_compute=0.62,
    tokens_half=40.0,
    eta_memory=0.71,
    tau_layer_s=18e-6,
    eta_attention=0.45,
    eta_kv=0.66,
    tau_attention_s=12e-6,
    step_overhead=[StepOverhead(tp=1, seconds=2.0e-3), StepOverhead(tp=8, seconds=2.9e-3)],
)


def synthetic_cases(rng: np.random.Generator) -> list[Measurement]:
    """Prefill, decode and engine-scope cases of two models at TP 1–4, some with terms excluded."""
    cases = []
    for model in ("llama-3.1-8b", "qwen2.5-7b"):
        for tp in (1, 2, 4):
            for tokens in (16, 128, 512, 2048, 8192):
                cases.append(dict(model=model, tp=tp, phase="prefill", tokens=tokens, batch=1, scope="layers"))
            for batch, context in ((1, 512), (8, 2048), (64, 1024), (256, 4096), (32, 16384)):
                scope = "engine" if rng.random() < 0.4 else "layers"
                cases.append(dict(model=model, tp=tp, phase="decode", batch=batch, context=context, scope=scope))
            cases.append(dict(model=model, tp=tp, phase="prefill", tokens=256, batch=1, scope="layers",
                              excludes=("attention", "allreduce")))  # fmt: skip
    return [Measurement(gpu="H100-SXM", dtype="bfloat16", **c) for c in cases]


def with_truth(catalog, parameters: GpuParameters):
    """The catalogue with H100-SXM's calibration replaced by `parameters` (a file written to tmp by the caller)."""
    from dataclasses import replace

    from planner.inputs.calibrations import GpuCalibration

    gpu = catalog.gpus["H100-SXM"]
    cal = GpuCalibration("truth", "t" * 64, "H100-SXM", "vllm", parameters)
    return replace(catalog, gpus={**catalog.gpus, "H100-SXM": replace(gpu, calibration=cal)})


def test_fit_recovers_a_known_truth_on_held_out_points():
    """Measurements made from known factors (+1 % noise) are fitted back; held-out points within a few percent."""
    catalog = load_catalog()
    truth = with_truth(catalog, TRUTH)
    rng = np.random.default_rng(7)
    cases = synthetic_cases(rng)
    measured = [
        c.model_copy(update={"measured_s": predict(c, truth) * float(np.exp(rng.normal(0, 0.01)))}) for c in cases
    ]
    train, test = measured[::2] + measured[1::4], measured[3::4]
    result = calibrate_gpu(train, catalog, cal_id="fit", sources=[])
    fitted = with_truth(catalog, result.document.parameters)
    ratios = [predict(c, fitted) / c.measured_s for c in test]
    assert max(abs(r - 1) for r in ratios) < 0.05, ratios
    assert float(np.median(np.abs(np.array(ratios) - 1))) < 0.02
    p = result.document.parameters
    assert p.eta_compute == pytest.approx(TRUTH.eta_compute, rel=0.05)
    assert p.eta_kv == pytest.approx(TRUTH.eta_kv, rel=0.05)
    assert p.step_overhead[0].seconds == pytest.approx(2.0e-3, rel=0.1)
    assert "step_overhead" in result.document.provenance.fitted


def test_fit_stays_within_the_physical_bounds():
    """Measurements faster than the roofline cannot pull an efficiency above 1 or an overhead below 0."""
    catalog = load_catalog()
    cases = synthetic_cases(np.random.default_rng(1))
    too_fast = [c.model_copy(update={"measured_s": predict(c, catalog) / 5}) for c in cases]
    p = calibrate_gpu(too_fast, catalog, cal_id="fast", sources=[]).document.parameters
    for name in ("eta_compute", "eta_memory", "eta_attention", "eta_kv"):
        assert 0 < getattr(p, name) <= 1
    assert p.tau_layer_s >= 0 and p.tau_attention_s >= 0 and all(r.seconds >= 0 for r in p.step_overhead)


def test_lower_bound_points_only_push_up():
    """A lower-bound point far below the model's prediction changes nothing; one above it pulls the fit up."""
    catalog = load_catalog()
    cases = synthetic_cases(np.random.default_rng(3))[:30]
    truth = with_truth(catalog, TRUTH)
    exact = [c.model_copy(update={"measured_s": predict(c, truth)}) for c in cases]
    low = [c.model_copy(update={"measured_s": c.measured_s / 10, "lower_bound": True}) for c in exact[:5]]
    a = calibrate_gpu(exact[5:], catalog, cal_id="a", sources=[]).document.parameters
    b = calibrate_gpu(exact[5:] + low, catalog, cal_id="b", sources=[]).document.parameters
    assert b.eta_compute == pytest.approx(a.eta_compute, rel=1e-3)


def allreduce_link(catalog, rows):
    link = catalog.links["nvlink4"]
    from dataclasses import replace

    return replace(link, allreduce=AllreduceCalibration("t", str(hash(tuple(rows))), "nvlink4", tuple(rows)))


def test_allreduce_table_bands_interpolation_and_engine_choice(catalog):
    rows = [
        AllreduceRow(implementation="nccl", tp=2, latency_s=10e-6, bandwidth_bytes_per_s=100e9),
        AllreduceRow(implementation="nccl", tp=8, latency_s=20e-6, bandwidth_bytes_per_s=50e9),
        AllreduceRow(implementation="nccl", tp=2, min_bytes=2**20, latency_s=30e-6, bandwidth_bytes_per_s=200e9),
        AllreduceRow(implementation="vllm", tp=2, latency_s=4e-6, bandwidth_bytes_per_s=20e9),
    ]
    link = allreduce_link(catalog, rows)
    assert allreduce_seconds(link, 1, 1e9) == 0.0
    assert allreduce_seconds(link, 2, 1000, "nccl") == pytest.approx(10e-6 + 1000 / 100e9)
    assert allreduce_seconds(link, 2, 2**21, "nccl") == pytest.approx(30e-6 + 2**21 / 200e9)  # the upper band
    assert allreduce_seconds(link, 2, 1000) == pytest.approx(4e-6 + 1000 / 20e9)  # vLLM's custom AR wins small
    assert allreduce_seconds(link, 2, 2**22) == pytest.approx(30e-6 + 2**22 / 200e9)  # NCCL wins large
    # TP 4 lies halfway (in log2) between 2 and 8: α and 1/β interpolate linearly there
    inv = (1 / 100e9 + 1 / 50e9) / 2
    assert allreduce_seconds(link, 4, 1000, "nccl") == pytest.approx(15e-6 + 1000 * inv)
    # beyond the table: ring scaling from the nearest measured size
    assert allreduce_seconds(link, 16, 0.0, "nccl") == pytest.approx(20e-6 * 15 / 7)


def test_allreduce_fit_recovers_alpha_beta_and_respects_the_link(catalog):
    sizes = [2**k for k in range(8, 30)]
    cases = [
        Measurement(
            tp=tp,
            phase="allreduce",
            bytes=s,
            interconnect="pcie4",
            engine="nccl",
            measured_s=12e-6 * (tp - 1) + s / (8e9 / tp),
        )
        for tp in (2, 4)
        for s in sizes
    ]
    rows = calibrate_allreduce(cases, catalog, cal_id="ar", sources=[]).document.table
    link_bw = catalog.links["pcie4"].bandwidth
    for row in rows:
        assert row.bandwidth_bytes_per_s <= link_bw * row.tp / (row.tp - 1) * (1 + 1e-9)
        if row.min_bytes >= 2**24:  # the bandwidth-bound band
            assert row.bandwidth_bytes_per_s == pytest.approx(8e9 / row.tp, rel=0.05)


@pytest.mark.parametrize("gpu", ["A100-80G", "H100-SXM", "H200-SXM", "L40S"])
def test_shipped_calibrations_are_calibrated_and_carry_sources(catalog, gpu):
    cal = catalog.gpus[gpu].calibration
    assert cal is not None and cal.status == "calibrated"
    from planner.inputs.calibrations import read_calibration

    doc, sha = read_calibration(Path(cal.path))
    assert sha == cal.sha256 and doc.provenance.points > 100
    assert any(
        s.repository.startswith("https://github.com/") and s.commit and s.licence for s in doc.provenance.sources
    )
    assert doc.provenance.heldout_error and doc.provenance.fitted
    assert "step_overhead" in doc.provenance.prior  # no engine-scope data: t0 is a prior, and says so


def test_uncalibrated_types_are_named(catalog):
    cluster = load_cluster(EXAMPLES / "tiny.yaml", catalog)  # A100-80G (calibrated) + L40 (fallback from L40S)
    assert uncalibrated_gpu_types(cluster) == ["L40 (fallback from L40S)"]
    assert catalog.gpus["RTX-A6000"].calibration.borrowed_from == "A100-80G"
    assert catalog.links["pcie3"].allreduce.bandwidth_scale == pytest.approx(0.5)


def write_calibration(folder: Path, text: str, name: str = "cal.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """schema_version: 1
kind: gpu
id: mine
gpu: L40
parameters: {eta_compute: 0.5, tokens_half: 10, eta_memory: 0.7, tau_layer_s: 1.0e-5, eta_attention: 0.4,
             eta_kv: 0.6, tau_attention_s: 1.0e-5, step_overhead: [{tp: 1, seconds: 0.001}]}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD.replace("eta_compute: 0.5", "eta_compute: 1.5"),
            "parameters.eta_compute: Input should be less than or equal to 1",
        ),
        (
            GOOD.replace("tau_layer_s: 1.0e-5", "tau_layer_s: -1"),
            "parameters.tau_layer_s: Input should be greater than or equal to 0",
        ),
        (GOOD.replace("gpu: L40", "gpu: L44"), "gpu: unknown GPU type 'L44'; did you mean"),
        (GOOD.replace("kind: gpu", "kind: tpu"), "kind: expected 'gpu' or 'allreduce', got 'tpu'"),
        (GOOD.replace("schema_version: 1", "schema_version: 2"), "cal.yaml: schema_version: Input should be 1"),
        (GOOD + "extra: 1\n", "cal.yaml: extra: Extra inputs are not permitted"),
    ],
)
def test_bad_calibration_files_name_file_and_field(tmp_path, text, message):
    path = write_calibration(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_catalog(calibration_files=[path])
    assert str(path) in error.value.message and message in error.value.message


def test_a_user_calibration_replaces_the_fallback(tmp_path):
    catalog = load_catalog(calibration_files=[write_calibration(tmp_path, GOOD)])
    cal = catalog.gpus["L40"].calibration
    assert cal.status == "calibrated" and cal.id == "mine" and cal.parameters.eta_compute == 0.5
    profiles = tmp_path / "profiles"
    write_calibration(profiles / "calibrations", GOOD.replace("id: mine", "id: from-dir"))
    assert load_catalog([profiles]).gpus["L40"].calibration.id == "from-dir"


def test_every_prediction_is_at_least_the_roofline(catalog):
    """For cases across all shipped and fallback calibrations: seconds ≥ max(FLOPs/peak, bytes/bandwidth)."""
    for gpu in ("A100-80G", "H100-SXM", "L40", "RTX-4090"):
        g = catalog.gpus[gpu]
        m = catalog.model("llama-3.1-8b")
        for batch, context in ((1, 128), (64, 4096)):
            case = Measurement(gpu=gpu, model=m.name, tp=1, phase="decode", batch=batch, context=context)
            weights = m.layers * m.params_per_layer * 2
            kv = batch * context * m.layers * 2 * m.kv_heads * m.head_dim * 2
            assert predict(case, catalog) >= (weights + kv) / g.memory_bandwidth
        case = Measurement(gpu=gpu, model=m.name, tp=1, phase="prefill", tokens=4096, batch=1)
        flops = 2 * m.layers * m.params_per_layer * 4096 + 2 * m.layers * m.heads * m.head_dim * 4096**2
        assert predict(case, catalog) >= flops / g.flops("float16")
        assert math.isfinite(predict(case, catalog))


def test_check_reports_a_plan_stale_when_a_calibration_changed(tmp_path, run_cli, solved_plan):
    plan = solved_plan(EXAMPLES / "tiny.yaml", "--time-limit", "5")
    fresh = run_cli("check", plan)
    assert fresh.exit_code == 0, fresh.output
    changed = (CALIBRATIONS / "a100-80g-vllm.yaml").read_text().replace("eta_memory: ", "eta_memory: 0.9 #", 1)
    user = write_calibration(tmp_path, changed, "a100.yaml")
    shutil.copy(user, tmp_path / "copy.yaml")
    stale = run_cli("check", plan, "--calibration", user)
    assert stale.exit_code == 1
    assert "calibration changed: gpu calibration of A100-80G: a100-80g-vllm (sha256" in stale.stderr
