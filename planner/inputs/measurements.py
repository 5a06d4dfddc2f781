"""Cases and measurements: the rows `hexplan predict` answers and `hexplan calibrate` fits.

Why one schema for both: a measurement is a case plus what was measured, so the file a profiler writes
can be fed to `predict` (carrying `measured_s` through) and to `calibrate` unchanged. Readers here turn
CSV, JSONL and vLLM benchmark JSON into frozen `Measurement` records; a bad row or field is an
InputError naming the file, the row and the field.

Case fields (README: hexplan predict): gpu, model, tp, phase (prefill | decode | allreduce), scope
(layers | engine; empty = engine), tokens, batch, context, bytes, interconnect, dtype; measurements add
measured_s and optionally source, engine, engine_version, device, lower_bound, excludes, components.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from planner.errors import InputError
from planner.types import Dtype
from planner.yamlio import read_text

CASE_COLUMNS = ("gpu", "model", "tp", "phase", "scope", "tokens", "batch", "context", "bytes", "interconnect", "dtype")
TERMS_EXCLUDABLE = ("elementwise", "attention", "allreduce")
Phase = Literal["prefill", "decode", "allreduce"]
REQUIRED = {
    "prefill": ("gpu", "model", "tp", "tokens", "batch"),
    "decode": ("gpu", "model", "tp", "batch", "context"),
    "allreduce": ("tp", "bytes", "interconnect"),
}


class Measurement(BaseModel):
    """One case, and what was measured for it (measured_s None: a case to predict only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str | None = None
    model: str | None = None
    tp: int = Field(1, gt=0, le=64)
    phase: Phase
    scope: Literal["layers", "engine"] | None = None
    tokens: int | None = Field(None, gt=0, le=10_000_000)
    batch: int | None = Field(None, gt=0, le=1_000_000)
    context: int | None = Field(None, gt=0, le=10_000_000)
    bytes: int | None = Field(None, gt=0, le=2**44)
    interconnect: str | None = None
    dtype: Dtype = "float16"
    measured_s: float | None = Field(None, gt=0, lt=1e5)
    source: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    device: str | None = None
    lower_bound: bool = False
    excludes: tuple[Literal["elementwise", "attention", "allreduce"], ...] = ()
    components: dict[str, float] | None = None

    @model_validator(mode="after")
    def _fields_of_the_phase(self) -> Self:
        missing = [name for name in REQUIRED[self.phase] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"phase {self.phase} needs {', '.join(missing)} (missing or empty)")
        if self.phase == "allreduce" and self.scope is not None:
            raise ValueError("scope applies to prefill and decode only; leave it empty for allreduce")
        return self

    @property
    def effective_scope(self) -> str:
        return self.scope or "engine"

    def regime(self) -> str:
        """The fidelity regime (benchmarks/costmodel_fidelity.py, calibration fit errors)."""
        if self.phase == "allreduce":
            nvlink = (self.interconnect or "").startswith(("nvlink", "xgmi"))
            return "allreduce NVLink" if nvlink else "allreduce PCIe"
        if self.phase == "prefill":
            return "prefill"
        assert self.batch is not None and self.context is not None
        return "decode small batch" if self.batch <= 16 and self.context < 8192 else "decode large batch / long context"


def parse_row(raw: Mapping[str, object], where: str) -> Measurement:
    """A measurement from a mapping of field → value (CSV cells as text, '' = not applicable)."""
    values = {k: v for k, v in raw.items() if k in Measurement.model_fields and v not in ("", None)}
    if isinstance(values.get("excludes"), str):
        values["excludes"] = tuple(e for e in values["excludes"].replace(";", " ").split() if e)  # type: ignore[union-attr]
    if isinstance(values.get("lower_bound"), str):
        values["lower_bound"] = values["lower_bound"].strip().lower() in ("1", "true", "yes")  # type: ignore[union-attr]
    try:
        return Measurement.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        got = first.get("input")
        shown = "" if isinstance(got, Mapping) or first["type"] == "missing" else f" (got {got!r})"
        raise InputError(f"{where}: {f'field {field}: ' if field else ''}{msg}{shown}.") from None


def read_cases_csv(path: Path) -> tuple[list[str], list[dict[str, str]], list[Measurement]]:
    """(header, raw rows, parsed rows) of a CASES.csv; other columns are kept in the raw rows."""
    text = read_text(path, what="cases CSV")
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    missing = [c for c in ("phase", "tp") if c not in header]
    if missing:
        raise InputError(
            f"{path}: line 1: the header has no column {', '.join(missing)}; expected {', '.join(CASE_COLUMNS)}.",
            hint="the first line names the columns, e.g. gpu,model,tp,phase,scope,tokens,batch,context,...",
        )
    raw_rows, parsed = [], []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise InputError(f"{path}: row {line - 1} (line {line}): more cells than header columns.")
        raw_rows.append({k: (v or "").strip() for k, v in row.items()})
        parsed.append(parse_row(raw_rows[-1], f"{path}: row {line - 1} (line {line})"))
    if not parsed:
        raise InputError(f"{path}: no rows after the header.")
    return header, raw_rows, parsed


def read_jsonl(path: Path) -> list[Measurement]:
    """Measurements of a JSONL file; a `{"_meta": ...}` header line is skipped."""
    out = []
    for line_no, line in enumerate(read_text(path, what="measurements JSONL").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {line_no}: not valid JSON: {exc.msg}.") from None
        except RecursionError:
            raise InputError(f"{path}: line {line_no}: JSON nested too deeply.") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: line {line_no}: expected a JSON object, got {type(data).__name__}.")
        if "_meta" in data:
            continue
        out.append(parse_row(data, f"{path}: line {line_no}"))
    if not out:
        raise InputError(f"{path}: no measurements in the file.")
    return out


def read_meta(path: Path) -> dict:
    """The `_meta` header of a measurements JSONL (empty when it has none)."""
    first = read_text(path, what="measurements JSONL").split("\n", 1)[0]
    try:
        data = json.loads(first)
    except (json.JSONDecodeError, RecursionError):
        return {}
    return data.get("_meta", {}) if isinstance(data, dict) else {}


def read_vllm_bench(path: Path, case: Mapping[str, object], output_len: int | None) -> Measurement:
    """A `vllm bench latency --output-json` or `vllm bench serve --save-result` file as one engine-scope
    measurement of the case given on the command line.

    latency: phase prefill takes avg_latency (run it with --output-len 1); phase decode takes avg_latency /
    output_len (a short prompt keeps the prefill share small). serve: phase decode takes median_tpot_ms
    (batch = the run's concurrency, context = the mean context), phase prefill median_ttft_ms.
    """
    try:
        data = json.loads(read_text(path, what="vLLM benchmark JSON"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON at line {exc.lineno}: {exc.msg}.") from None
    except RecursionError:
        raise InputError(f"{path}: the JSON is nested too deeply to be a vllm bench result.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object from vllm bench.")
    phase = case.get("phase")
    if "avg_latency" in data:
        seconds = _number(data, "avg_latency", path)
        if phase == "decode":
            if not output_len:
                raise InputError(f"{path}: a decode step from `vllm bench latency` needs --output-len.")
            seconds /= output_len
        source = "vllm bench latency"
    elif "median_tpot_ms" in data or "median_ttft_ms" in data:
        key = "median_tpot_ms" if phase == "decode" else "median_ttft_ms"
        seconds = _number(data, key, path) / 1000
        source = "vllm bench serve"
    else:
        raise InputError(
            f"{path}: neither avg_latency (vllm bench latency --output-json) nor median_tpot_ms / median_ttft_ms "
            "(vllm bench serve --save-result) in the file."
        )
    fields = dict(case, scope=case.get("scope") or "engine", measured_s=seconds, source=f"{source}: {path.name}")
    fields.setdefault("engine", "vllm")
    return parse_row(fields, f"{path} (with the case given on the command line)")


def _number(data: dict, key: str, path: Path) -> float:
    value = data.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise InputError(f"{path}: field {key}: expected a positive number, got {value!r}.")
    return float(value)


def write_jsonl(records: list[Measurement], meta: dict | None = None) -> str:
    """JSONL text: an optional `_meta` header, then one record per line (unset optional fields left out)."""
    lines = [json.dumps({"_meta": meta}, sort_keys=True)] if meta else []
    for r in records:
        data = r.model_dump(mode="json", exclude_defaults=True)
        lines.append(json.dumps(data, sort_keys=True))
    return "\n".join(lines) + "\n"
