"""`hexplan predict`: the cost model's answer for one case (planner.inputs.measurements), in seconds.

A case is what a measurement measured (README: hexplan predict): phase prefill is `batch` prompts of
`tokens` tokens in one forward step; decode is one step of `batch` sequences each with `context` tokens
of context; allreduce is one all-reduce of `bytes` over `tp` GPUs on `interconnect`. scope=engine is a
whole engine iteration (all layers, LM head, the per-step overhead); scope=layers is the transformer
layers' kernels only, summed over all layers. Terms a measurement names in `excludes` are left out, so
a prediction is compared with exactly what was measured. The same planner.costs.stepmodel gives the
planner's replica times, so what `predict` says is what plans are built on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from planner.costs.allreduce import allreduce_seconds
from planner.costs.stepmodel import Factors, Work, decode_work, gpu_factors, prefill_work, seconds, terms
from planner.errors import InputError
from planner.inputs.catalog import DTYPE_BYTES, Catalog, GpuProfile, LinkProfile, ModelProfile, model_from_hf_config
from planner.inputs.measurements import Measurement


@dataclass(frozen=True)
class Resolved:
    """A case's catalogue records: GPU (None for an all-reduce), model, the TP link."""

    gpu: GpuProfile | None
    model: ModelProfile | None
    link: LinkProfile | None


def resolve(case: Measurement, catalog: Catalog, where: str) -> Resolved:
    """Look the case's names up in the catalogue; unknown names raise InputError naming `where` and the field."""
    try:  # an all-reduce is a property of the link: its GPU column is informative only
        gpu = catalog.gpu(case.gpu) if case.gpu and case.phase != "allreduce" else None
        model = _model(case.model, catalog) if case.model else None
        link_name = case.interconnect or (gpu.intra_node_link if gpu else None)
        link = catalog.link(link_name) if link_name else None
    except LookupError as exc:
        field = "gpu" if "GPU" in str(exc) else "model" if "model" in str(exc) else "interconnect"
        raise InputError(f"{where}: field {field}: {exc}.") from None
    if gpu is not None and case.dtype not in gpu.peak_flops:
        raise InputError(f"{where}: field dtype: {gpu.key} has no {case.dtype} peak in the catalogue.")
    return Resolved(gpu, model, link)


def _model(name: str, catalog: Catalog) -> ModelProfile:
    """A catalogue model, or a Hugging Face config.json path (what `hexplan profile --model` records)."""
    if name.endswith(".json"):
        return model_from_hf_config(Path(name))
    return catalog.model(name)


def kv_replication(model: ModelProfile, tp: int) -> float:
    return tp * math.ceil(model.kv_heads / tp) / model.kv_heads


def case_work(case: Measurement, r: Resolved) -> Work:
    """The step's work counts per GPU, with the case's scope and excludes applied."""
    assert r.model is not None and r.link is not None
    model, tp, b = r.model, case.tp, DTYPE_BYTES[case.dtype]
    engine = case.effective_scope == "engine"
    steps = 1.0 if engine else 0.0
    if case.phase == "prefill":
        assert case.tokens is not None and case.batch is not None
        m = case.batch * case.tokens
        ar = 2 * allreduce_seconds(r.link, tp, m * model.hidden * b)
        work = prefill_work(
            model, tp, b, model.layers, case.batch, m, case.batch * case.tokens**2,
            allreduce_s=ar, lm_head=engine, steps=steps,
        )  # fmt: skip
    else:
        assert case.batch is not None and case.context is not None
        ar = 2 * allreduce_seconds(r.link, tp, case.batch * model.hidden * b)
        work = decode_work(
            model, tp, b, model.layers, case.batch, case.context, kv_replication(model, tp),
            allreduce_s=ar, lm_head=engine, steps=steps,
        )  # fmt: skip
    out = set(case.excludes)
    return replace(
        work,
        w_elementwise=0.0 if "elementwise" in out else 1.0,
        w_attention=0.0 if "attention" in out else 1.0,
        w_allreduce=0.0 if "allreduce" in out else 1.0,
    )


def case_factors(case: Measurement, r: Resolved) -> Factors:
    assert r.gpu is not None
    return gpu_factors(r.gpu, case.dtype, case.tp)


def predict(case: Measurement, catalog: Catalog, where: str = "case") -> float:
    """Seconds the cost model predicts for the case."""
    r = resolve(case, catalog, where)
    if case.phase == "allreduce":
        assert r.link is not None and case.bytes is not None
        impl = case.engine if case.engine in ("nccl", "vllm") else None
        return allreduce_seconds(r.link, case.tp, case.bytes, impl)
    if r.model is None:
        raise InputError(f"{where}: field model: phase {case.phase} needs a model.")
    return float(seconds(case_factors(case, r), case_work(case, r)))


def breakdown(case: Measurement, catalog: Catalog, where: str = "case") -> dict[str, float]:
    """Seconds per term (gemm, elementwise, attention, allreduce, lm_head, overhead); all-reduce cases: one term."""
    r = resolve(case, catalog, where)
    if case.phase == "allreduce":
        return {"allreduce": predict(case, catalog, where)}
    return {k: float(v) for k, v in terms(case_factors(case, r), case_work(case, r)).items()}


def calibration_status(case: Measurement, catalog: Catalog) -> str:
    """'calibrated', 'fallback from X' or 'uncalibrated' for the case's GPU (all-reduce: its link)."""
    r = resolve(case, catalog, "case")
    record = r.link.allreduce if case.phase == "allreduce" and r.link else (r.gpu.calibration if r.gpu else None)
    if record is None:
        return "uncalibrated"
    return f"fallback from {record.borrowed_from}" if record.status == "fallback" else "calibrated"
