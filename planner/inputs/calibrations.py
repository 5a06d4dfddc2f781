"""Calibration files: fitted cost-model parameters per GPU type × engine, and all-reduce tables per link.

Why data records here and the maths in planner.costs: a calibration is an input like the catalogue
(a file with provenance, validated strictly, hashed so a plan can say which one it used); what the
parameters *mean* is the cost model's business (planner.costs.stepmodel).

Files (README: calibration files) live in profiles/calibrations/*.yaml, in `<DIR>/calibrations/*.yaml`
of each `--profiles DIR`, and in files given with `--calibration FILE` (later ones win, by GPU type or
interconnect). `fallbacks.yaml` there says which calibrated class an uncalibrated GPU type or link borrows
its factors from; such GPUs run on a *fallback* and are named as uncalibrated wherever figures are shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from planner.errors import InputError
from planner.types import Strict
from planner.yamlio import is_directory, load_yaml, parse_yaml, read_text, validate

CALIBRATION_SCHEMA_VERSION = 1
FALLBACKS_FILE = "fallbacks.yaml"
Status = Literal["calibrated", "fallback", "uncalibrated"]


# ----------------------------------------------------------------------------- file schema


class StepOverhead(Strict):
    tp: int = Field(gt=0, le=64)
    seconds: float = Field(ge=0, le=1)


class GpuParameters(Strict):
    """The step model's factors (planner.costs.stepmodel): efficiencies ≤ 1, overheads ≥ 0."""

    eta_compute: float = Field(gt=0, le=1, description="large-GEMM fraction of peak FLOP/s")
    tokens_half: float = Field(ge=0, le=65536, description="GEMM rows at which compute efficiency is half")
    eta_memory: float = Field(gt=0, le=1, description="fraction of DRAM bandwidth for weights and activations")
    tau_layer_s: float = Field(ge=0, le=0.01, description="fixed per-layer cost of norms, RoPE, activation, adds")
    eta_attention: float = Field(gt=0, le=1, description="attention fraction of peak FLOP/s")
    eta_kv: float = Field(gt=0, le=1, description="attention fraction of DRAM bandwidth (KV cache reads)")
    tau_attention_s: float = Field(ge=0, le=0.01, description="fixed per-layer cost of the attention kernel")
    step_overhead: list[StepOverhead] = Field(min_length=1, description="t0(TP): per engine iteration")


class SourceRef(Strict):
    file: str
    repository: str = ""
    commit: str = ""
    licence: str = ""


class RegimeError(Strict):
    points: int = Field(ge=0)
    median_abs_pct: float = Field(ge=0)
    median_ratio: float = Field(ge=0)
    worst_ratio: float = Field(ge=0)


class Provenance(Strict):
    sources: list[SourceRef] = Field(default=[])
    engine_version: str = ""
    hardware: str = ""
    date: str = ""
    points: int = Field(0, ge=0)
    fit_error: dict[str, RegimeError] = Field(default={}, description="on the points fitted, per regime")
    heldout_error: dict[str, RegimeError] = Field(default={}, description="k-fold, points not in the fit")
    fitted: list[str] = Field(default=[], description="parameters fitted from the points")
    prior: dict[str, str] = Field(default={}, description="parameters not fitted: where their value comes from")
    command: str = ""


class GpuCalibrationFile(Strict):
    schema_version: Literal[1] = CALIBRATION_SCHEMA_VERSION
    kind: Literal["gpu"]
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    gpu: str
    engine: str = "vllm"
    parameters: GpuParameters
    provenance: Provenance = Provenance()


class AllreduceRow(Strict):
    implementation: str = Field(description="nccl, or vllm (vLLM's custom all-reduce)")
    tp: int = Field(gt=1, le=64)
    min_bytes: int = Field(0, ge=0, description="the row applies from this message size up to the next row's")
    latency_s: float = Field(ge=0, le=1, description="α: time of an empty all-reduce")
    bandwidth_bytes_per_s: float = Field(gt=0, description="β: message bytes per second at large sizes")


class AllreduceCalibrationFile(Strict):
    schema_version: Literal[1] = CALIBRATION_SCHEMA_VERSION
    kind: Literal["allreduce"]
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    interconnect: str
    table: list[AllreduceRow] = Field(min_length=1)
    provenance: Provenance = Provenance()


class FallbackEntry(Strict):
    source: str = Field(alias="from", description="the calibrated GPU type or link whose factors are borrowed")
    why: str


class FallbacksFile(Strict):
    schema_version: Literal[1] = CALIBRATION_SCHEMA_VERSION
    gpus: dict[str, FallbackEntry] = Field(default={})
    links: dict[str, FallbackEntry] = Field(default={})


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class GpuCalibration:
    """A GPU type's step-model factors and where they came from (`status`: calibrated or fallback)."""

    id: str
    sha256: str
    gpu: str
    engine: str
    parameters: GpuParameters
    status: Status = "calibrated"
    borrowed_from: str = ""
    path: str = ""


@dataclass(frozen=True)
class AllreduceCalibration:
    """A link's measured all-reduce table: (implementation, tp) → (α seconds, β bytes/s)."""

    id: str
    sha256: str
    interconnect: str
    table: tuple[AllreduceRow, ...]
    status: Status = "calibrated"
    borrowed_from: str = ""
    bandwidth_scale: float = 1.0  # a fallback's link bandwidth ÷ its donor's
    path: str = ""


@dataclass(frozen=True)
class Calibrations:
    gpus: Mapping[str, GpuCalibration] = field(default_factory=dict)
    links: Mapping[str, AllreduceCalibration] = field(default_factory=dict)
    gpu_fallbacks: Mapping[str, FallbackEntry] = field(default_factory=dict)
    link_fallbacks: Mapping[str, FallbackEntry] = field(default_factory=dict)


def read_calibration(path: Path) -> tuple[GpuCalibrationFile | AllreduceCalibrationFile, str]:
    """One calibration file, validated, and its sha256 (what plans record)."""
    text = read_text(path, what="calibration file")  # read once: parsed, and hashed for the plan
    data = parse_yaml(text, path, what="calibration file")
    if isinstance(data, dict) and data.get("kind") not in ("gpu", "allreduce"):
        raise InputError(
            f"{path}: kind: expected 'gpu' or 'allreduce', got {data.get('kind')!r}.",
            hint="see the README section 'Calibration files'",
        )
    schema = GpuCalibrationFile if isinstance(data, dict) and data.get("kind") == "gpu" else AllreduceCalibrationFile
    parsed = validate(schema, data, path)
    return parsed, hashlib.sha256(text.encode("utf-8")).hexdigest()


def calibration_files(default_dir: Path, extra_dirs: Iterable[Path], files: Iterable[Path]) -> list[Path]:
    """Every calibration file in load order: default dir, each extra dir's calibrations/, explicit files."""
    found: list[Path] = []
    for directory in (default_dir, *(d / "calibrations" for d in extra_dirs)):
        if is_directory(directory):
            found += [p for p in sorted(directory.glob("*.yaml")) if p.name != FALLBACKS_FILE]
    return found + list(files)


def load_calibrations(
    default_dir: Path, extra_dirs: Iterable[Path] = (), files: Iterable[Path] = (), resolve=lambda kind, key: key
) -> Calibrations:
    """Read every calibration and fallbacks file; `resolve(kind, key)` maps a GPU alias or link to its
    catalogue key and raises LookupError for an unknown one (reported naming the file and field)."""
    extra_dirs = list(extra_dirs)
    gpus: dict[str, GpuCalibration] = {}
    links: dict[str, AllreduceCalibration] = {}
    for path in calibration_files(default_dir, extra_dirs, files):
        parsed, sha = read_calibration(path)
        field_name = "gpu" if parsed.kind == "gpu" else "interconnect"
        try:
            key = resolve(parsed.kind, getattr(parsed, field_name))
        except LookupError as exc:
            raise InputError(
                f"{path}: {field_name}: {exc}.", hint="use a key of profiles/gpus.yaml or links.yaml"
            ) from None
        if isinstance(parsed, GpuCalibrationFile):
            gpus[key] = GpuCalibration(parsed.id, sha, key, parsed.engine, parsed.parameters, path=str(path))
        else:
            _check_table(parsed, path)
            links[key] = AllreduceCalibration(parsed.id, sha, key, tuple(parsed.table), path=str(path))
    gpu_fallbacks: dict[str, FallbackEntry] = {}
    link_fallbacks: dict[str, FallbackEntry] = {}
    for directory in (default_dir, *(d / "calibrations" for d in extra_dirs)):
        path = directory / FALLBACKS_FILE
        if path.is_file():
            parsed_fb = validate(FallbacksFile, load_yaml(path, what="calibration fallbacks"), path)
            gpu_fallbacks.update(parsed_fb.gpus)
            link_fallbacks.update(parsed_fb.links)
    return Calibrations(gpus, links, gpu_fallbacks, link_fallbacks)


def _check_table(parsed: AllreduceCalibrationFile, path: Path) -> None:
    seen: set[tuple[str, int, int]] = set()
    for i, row in enumerate(parsed.table):
        if (row.implementation, row.tp, row.min_bytes) in seen:
            raise InputError(
                f"{path}: table[{i}]: a second row for {row.implementation} at tp {row.tp} from {row.min_bytes} bytes."
            )
        seen.add((row.implementation, row.tp, row.min_bytes))


def gpu_calibration_for(key: str, calibrations: Calibrations) -> GpuCalibration | None:
    """The GPU type's own calibration, else its fallback donor's (status 'fallback'), else None."""
    if key in calibrations.gpus:
        return calibrations.gpus[key]
    entry = calibrations.gpu_fallbacks.get(key)
    if entry is None or entry.source not in calibrations.gpus:
        return None
    donor = calibrations.gpus[entry.source]
    return GpuCalibration(
        donor.id, donor.sha256, key, donor.engine, donor.parameters, "fallback", entry.source, donor.path
    )


def link_calibration_for(
    key: str, bandwidth: float, calibrations: Calibrations, link_bandwidth
) -> AllreduceCalibration | None:
    """The link's own all-reduce table, else its fallback donor's with β scaled by the bandwidth ratio."""
    if key in calibrations.links:
        return calibrations.links[key]
    entry = calibrations.link_fallbacks.get(key)
    if entry is None or entry.source not in calibrations.links:
        return None
    donor = calibrations.links[entry.source]
    scale = bandwidth / link_bandwidth(entry.source)
    return AllreduceCalibration(donor.id, donor.sha256, key, donor.table, "fallback", entry.source, scale, donor.path)
