"""`hexplan calibrate`: measurements in, one calibration file out (a GPU type's factors or a link's all-reduce).

Why separate from planner.costs.fit: fit is the maths (least squares, k-fold); this module decides what
to fit from which records, measures the error per regime (in-sample and held-out), and writes the
provenance a calibration file carries (sources with repository, commit and licence; engine versions;
hardware; date; point count; which parameters were fitted and where the others come from).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from planner.costs.allreduce import allreduce_seconds
from planner.costs.fit import (
    FOLDS,
    fit_allreduce,
    fit_gpu,
    folds,
    heldout_gpu,
    identifiable,
    predict_stacked,
    prior_vector,
    stack,
    to_parameters,
)
from planner.costs.stepmodel import prior_parameters
from planner.errors import InputError
from planner.inputs.calibrations import (
    AllreduceCalibration,
    AllreduceCalibrationFile,
    GpuCalibrationFile,
    GpuParameters,
    Provenance,
    RegimeError,
    SourceRef,
)
from planner.inputs.catalog import Catalog, LinkProfile
from planner.inputs.measurements import Measurement

STEP_OVERHEAD_PRIOR = (
    "prior, not fitted (no engine-scope points): vLLM per-iteration overhead, planner.costs.stepmodel."
    "PRIOR_STEP_OVERHEAD; see benchmarks/RESULTS.md 'What is fitted and what is prior'"
)


@dataclass(frozen=True)
class Residual:
    record: Measurement
    predicted_s: float
    heldout_s: float

    @property
    def ratio(self) -> float:
        return self.predicted_s / float(self.record.measured_s or 1.0)

    @property
    def heldout_ratio(self) -> float:
        return self.heldout_s / float(self.record.measured_s or 1.0)


@dataclass(frozen=True)
class Calibrated:
    """A fitted calibration: the file's content, and every point's residuals."""

    document: GpuCalibrationFile | AllreduceCalibrationFile
    residuals: list[Residual] = field(default_factory=list)

    @property
    def worst_heldout_pct(self) -> float:
        errors = self.document.provenance.heldout_error.values()
        return max((e.median_abs_pct for e in errors), default=0.0)


def regime_errors(records: Sequence[Measurement], predicted: np.ndarray) -> dict[str, RegimeError]:
    """Median |error| %, median and worst ratio per regime; lower-bound points are not truth and left out."""
    by_regime: dict[str, list[float]] = {}
    for rec, p in zip(records, predicted, strict=True):
        if not rec.lower_bound and rec.measured_s:
            by_regime.setdefault(rec.regime(), []).append(float(p) / rec.measured_s)
    out = {}
    for regime, ratios in sorted(by_regime.items()):
        arr = np.array(ratios)
        worst = float(arr[np.argmax(np.abs(np.log(arr)))])
        out[regime] = RegimeError(
            points=len(arr),
            median_abs_pct=round(float(np.median(np.abs(arr - 1))) * 100, 2),
            median_ratio=round(float(np.median(arr)), 4),
            worst_ratio=round(worst, 4),
        )
    return out


def _provenance(records: Sequence[Measurement], sources: list[SourceRef], **extra) -> Provenance:
    versions = sorted({f"{r.engine} {r.engine_version}" for r in records if r.engine and r.engine_version})
    devices = sorted({r.device for r in records if r.device})
    hardware = extra.pop("hardware", "") or ", ".join(devices)
    return Provenance(
        sources=sources, engine_version="; ".join(versions), points=len(records), hardware=hardware, **extra
    )


def calibrate_gpu(
    records: Sequence[Measurement],
    catalog: Catalog,
    *,
    cal_id: str,
    sources: list[SourceRef],
    prior: GpuParameters | None = None,
    prior_name: str = "",
    date: str = "",
    command: str = "",
    hardware: str = "",
) -> Calibrated:
    """Fit one GPU type's factors from its prefill/decode records; `prior` fills what they cannot identify."""
    gpus = {catalog.gpu(r.gpu).key for r in records if r.gpu}
    if len(gpus) != 1:
        raise InputError(f"calibrate: the measurements cover GPU types {', '.join(sorted(gpus))}; fit one at a time.")
    gpu = catalog.gpus[gpus.pop()]
    base = prior or prior_parameters(gpu)
    start = prior_vector(base)
    free = identifiable(records)
    s = stack(records, catalog)
    values = fit_gpu(s, free, start)
    fitted = predict_stacked(values, s)
    held = heldout_gpu(s, free, start) if len(records) >= 2 * FOLDS else fitted
    not_fitted = [n for n in GpuParameters.model_fields if n not in free and n != "step_overhead"]
    where = (
        f"from {prior_name}"
        if prior_name
        else "the catalogue's efficiency / the module prior (planner.costs.stepmodel)"
    )
    prior_notes = {n: where for n in not_fitted}
    if "t0_s" not in free:
        prior_notes["step_overhead"] = STEP_OVERHEAD_PRIOR
    provenance = _provenance(
        records, sources, date=date, command=command, hardware=hardware,
        fit_error=regime_errors(records, fitted), heldout_error=regime_errors(records, held),
        fitted=[n for n in free if n in GpuParameters.model_fields] + (["step_overhead"] if "t0_s" in free else []),
        prior=prior_notes,
    )  # fmt: skip
    engines = sorted({r.engine for r in records if r.engine and r.engine != "sarathi-serve"}) or ["vllm"]
    document = GpuCalibrationFile(
        kind="gpu", id=cal_id, gpu=gpu.key, engine=engines[0], parameters=to_parameters(values), provenance=provenance
    )
    residuals = [Residual(r, float(p), float(h)) for r, p, h in zip(records, fitted, held, strict=True)]
    return Calibrated(document, residuals)


def calibrate_allreduce(
    records: Sequence[Measurement],
    catalog: Catalog,
    *,
    cal_id: str,
    sources: list[SourceRef],
    date: str = "",
    command: str = "",
    hardware: str = "",
) -> Calibrated:
    """Fit a link's all-reduce table from its records (one interconnect)."""
    links = {r.interconnect for r in records}
    if len(links) != 1:
        raise InputError(f"calibrate: the all-reduce measurements cover links {', '.join(sorted(map(str, links)))}; "
                         "fit one at a time.")  # fmt: skip
    link = catalog.link(str(links.pop()))
    rows = fit_allreduce(records, link.bandwidth)
    fitted = _table_predict(rows, records)
    held = np.array(fitted, copy=True)
    if len(records) >= 2 * FOLDS:
        for test in folds(len(records)):
            train = [records[i] for i in np.setdiff1d(np.arange(len(records)), test)]
            part = _table_predict(fit_allreduce(train, link.bandwidth), [records[i] for i in test])
            held[test] = part
    provenance = _provenance(
        records, sources, date=date, command=command, hardware=hardware,
        fit_error=regime_errors(records, fitted), heldout_error=regime_errors(records, held),
        fitted=["latency_s", "bandwidth_bytes_per_s"],
    )  # fmt: skip
    document = AllreduceCalibrationFile(
        kind="allreduce", id=cal_id, interconnect=link.key, table=rows, provenance=provenance
    )
    return Calibrated(document, [Residual(r, float(p), float(h)) for r, p, h in zip(records, fitted, held)])


def _table_predict(rows, records: Sequence[Measurement]) -> np.ndarray:
    """α + bytes/β of each record from the table's rows (its implementation, tp and size band), through the
    same look-up the planner uses (planner.costs.allreduce; an implementation the rows lack, or none, takes the
    fastest of theirs)."""
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()  # the look-up memoises by content
    table = AllreduceCalibration("fit", digest, "fit", tuple(rows))
    link = LinkProfile("fit", "intra_node", 1.0, 0.0, allreduce=table)
    return np.array([allreduce_seconds(link, rec.tp, float(rec.bytes or 0), rec.engine) for rec in records])
