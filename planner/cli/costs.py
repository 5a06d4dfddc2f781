"""Commands about the cost model: `predict` a case's seconds, `calibrate` factors from measurements,
`profile` the local GPUs (or CPU) into measurements. Thin: parse, call planner.costs / inputs, render."""

from __future__ import annotations

import csv
import io
import json
import shlex
import sys
from datetime import date as Date
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from planner.cli.app import CalibrationOption, ProfilesOption, app, catalog_from, console, console_err
from planner.costs.calibrate import Calibrated, calibrate_allreduce, calibrate_gpu
from planner.costs.predict import breakdown, calibration_status, predict
from planner.errors import InputError
from planner.inputs.calibrations import GpuCalibrationFile, SourceRef, read_calibration
from planner.inputs.catalog import Catalog, ModelProfile, model_from_hf_config
from planner.inputs.measurements import (
    Measurement,
    parse_row,
    read_cases_csv,
    read_jsonl,
    read_meta,
    read_vllm_bench,
    write_jsonl,
)
from planner.inputs.profiler import ProfileRequest, Sweep, Task, import_torch, plan_tasks
from planner.inputs.profiler import run as run_profile
from planner.yamlio import dump_yaml, write_atomic


class PhaseChoice(StrEnum):
    prefill = "prefill"
    decode = "decode"
    allreduce = "allreduce"


class ScopeChoice(StrEnum):
    engine = "engine"
    layers = "layers"


GpuOpt = Annotated[str | None, typer.Option("--gpu", help="GPU type (profiles/gpus.yaml key or alias)")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="model (profiles/models.yaml)")]
TpOpt = Annotated[int | None, typer.Option("--tp", min=1, max=64, help="tensor-parallel GPUs")]
PhaseOpt = Annotated[PhaseChoice | None, typer.Option("--phase", help="prefill, decode or allreduce")]
ScopeOpt = Annotated[ScopeChoice | None, typer.Option("--scope", help="engine (whole iteration) or layers")]
TokensOpt = Annotated[int | None, typer.Option("--tokens", min=1, help="prefill: tokens per prompt")]
BatchOpt = Annotated[int | None, typer.Option("--batch", min=1, help="prompts (prefill) or sequences (decode)")]
ContextOpt = Annotated[int | None, typer.Option("--context", min=1, help="decode: context tokens per sequence")]
BytesOpt = Annotated[int | None, typer.Option("--bytes", min=1, help="allreduce: message bytes")]
LinkOpt = Annotated[str | None, typer.Option("--interconnect", help="link (profiles/links.yaml); default: the GPU's")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float16, bfloat16 or fp8 (default float16)")]


def case_from_options(where: str, **options: object) -> Measurement:
    fields = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in options.items() if v is not None}
    if "phase" not in fields:
        raise InputError(f"{where}: --phase is required (prefill, decode or allreduce), or give --cases CSV.")
    return parse_row(fields, where)


@app.command("predict")
def predict_command(
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    tp: TpOpt = None,
    phase: PhaseOpt = None,
    scope: ScopeOpt = None,
    tokens: TokensOpt = None,
    batch: BatchOpt = None,
    context: ContextOpt = None,
    nbytes: BytesOpt = None,
    interconnect: LinkOpt = None,
    dtype: DtypeOpt = None,
    cases: Annotated[Path | None, typer.Option("--cases", help="CSV of cases (README: hexplan predict)")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="CSV to write (default: stdout)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (seconds, terms, calibration)")] = False,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Seconds the cost model predicts for one case (flags) or every row of a CASES.csv (adds predicted_s)."""
    catalog = catalog_from(profiles, calibration)
    if cases is None:
        case = case_from_options(
            "predict", gpu=gpu, model=model, tp=tp, phase=phase, scope=scope, tokens=tokens, batch=batch,
            context=context, bytes=nbytes, interconnect=interconnect, dtype=dtype,
        )  # fmt: skip
        seconds = predict(case, catalog, "predict")
        status = calibration_status(case, catalog)
        if as_json:
            body = {"predicted_s": seconds, "terms_s": breakdown(case, catalog), "calibration": status}
            print(
                json.dumps(body | {"case": case.model_dump(mode="json", exclude_none=True)}, indent=2, sort_keys=True)
            )
        else:
            print(f"{seconds:.6g}")
            if status != "calibrated":
                console_err.print(f"[yellow]note[/]: {status} ({case.gpu or case.interconnect})", soft_wrap=True)
        return
    given = [name for name, v in (("--gpu", gpu), ("--model", model), ("--phase", phase)) if v is not None]
    if given:
        raise InputError(f"--cases reads every case from the CSV; do not combine it with {', '.join(given)}.")
    header, raw_rows, parsed = read_cases_csv(cases)
    predicted = [predict(case, catalog, f"{cases}: row {i + 1} (line {i + 2})") for i, case in enumerate(parsed)]
    statuses = sorted({f"{c.gpu or c.interconnect}: {calibration_status(c, catalog)}" for c in parsed})
    if as_json:
        print(json.dumps([r | {"predicted_s": p} for r, p in zip(raw_rows, predicted)], indent=2))
    else:
        text = io.StringIO()
        writer = csv.DictWriter(text, [*header, "predicted_s"] if "predicted_s" not in header else header,
                                lineterminator="\n")  # fmt: skip
        writer.writeheader()
        for row, seconds in zip(raw_rows, predicted):
            writer.writerow(row | {"predicted_s": f"{seconds:.6g}"})
        if output is None:
            sys.stdout.write(text.getvalue())
        else:
            write_atomic(output, text.getvalue())
            console.print(f"wrote {len(predicted)} predictions to {output}")
    for line in statuses:
        if not line.endswith(": calibrated"):
            console_err.print(f"[yellow]note[/]: {line}", soft_wrap=True)


class KindChoice(StrEnum):
    gpu = "gpu"
    allreduce = "allreduce"


def read_measurements(
    paths: list[Path], case: dict, output_len: int | None
) -> tuple[list[Measurement], list[SourceRef]]:
    """Every measurement of the files (JSONL, CASES-style CSV with measured_s, vllm bench JSON) and their sources."""
    records: list[Measurement] = []
    sources: list[SourceRef] = []
    for path in paths:
        if path.suffix == ".json":
            records.append(read_vllm_bench(path, case, output_len))
        elif path.suffix == ".csv":
            records += read_cases_csv(path)[2]
        else:
            records += read_jsonl(path)
        meta = read_meta(path) if path.suffix == ".jsonl" else {}
        sources.append(
            SourceRef(
                file=path.as_posix(),
                repository=str(meta.get("repository", "")),
                commit=str(meta.get("commit", "")),
                licence=str(meta.get("licence", "")),
            )
        )
    unmeasured = next((i for i, r in enumerate(records) if r.measured_s is None), None)
    if unmeasured is not None:
        raise InputError(f"calibrate: measurement {unmeasured + 1} has no measured_s; every point needs one.")
    return records, sources


def run_calibration(
    records: list[Measurement],
    catalog: Catalog,
    *,
    kind: str | None,
    cal_id: str | None,
    sources: list[SourceRef],
    prior: Path | None,
    date: str,
    command: str,
) -> Calibrated:
    """Choose what to fit (one GPU type, or one link's all-reduce) and fit it."""
    compute = [r for r in records if r.phase != "allreduce"]
    allreduce = [r for r in records if r.phase == "allreduce"]
    if kind is None:
        if compute and allreduce:
            raise InputError(
                "calibrate: the measurements hold both compute and all-reduce points; choose one with --kind gpu "
                "or --kind allreduce (one calibration file each)."
            )
        kind = "allreduce" if allreduce else "gpu"
    chosen = allreduce if kind == "allreduce" else compute
    if not chosen:
        raise InputError(f"calibrate: no {kind} measurements in the files given.")
    common = {"sources": sources, "date": date, "command": command}
    if kind == "allreduce":
        link = chosen[0].interconnect or "link"
        return calibrate_allreduce(chosen, catalog, cal_id=cal_id or f"{link}-allreduce", **common)
    prior_params, prior_name = None, ""
    if prior is not None:
        parsed, _ = read_calibration(prior)
        if not isinstance(parsed, GpuCalibrationFile):
            raise InputError(f"{prior}: --prior needs a GPU calibration (kind: gpu).")
        prior_params, prior_name = parsed.parameters, f"{parsed.id} ({prior})"
    gpu = catalog.gpu(chosen[0].gpu or "").key if chosen[0].gpu else "gpu"
    return calibrate_gpu(
        chosen, catalog, cal_id=cal_id or f"{gpu.lower()}-vllm", prior=prior_params, prior_name=prior_name, **common
    )


def calibration_yaml(result: Calibrated) -> str:
    doc = result.document
    header = (
        f"# hexgen2 calibration ({doc.kind}): written by `hexplan calibrate`; README: calibration files.\n"
        f"# Regenerate, do not edit: {doc.provenance.command or 'hexplan calibrate'}\n"
    )
    return header + dump_yaml(doc.model_dump(mode="json", by_alias=True))


def residual_table(result: Calibrated) -> Table:
    table = Table(title=f"{result.document.id}: per-point residuals (ratio = predicted / measured)")
    for column in ("#", "case", "measured s", "fitted s", "ratio", "held-out ratio", "note"):
        table.add_column(column, justify="left" if column in ("case", "note") else "right")
    for i, r in enumerate(result.residuals, start=1):
        m = r.record
        case = " ".join(
            f"{k}={v}"
            for k, v in (
                ("model", m.model),
                ("tp", m.tp),
                ("phase", m.phase),
                ("tokens", m.tokens),
                ("batch", m.batch),
                ("context", m.context),
                ("bytes", m.bytes),
                ("engine", m.engine),
            )
            if v is not None
        )
        note = "lower bound" if m.lower_bound else ""
        table.add_row(str(i), case, f"{m.measured_s:.4g}", f"{r.predicted_s:.4g}", f"{r.ratio:.3f}",
                      f"{r.heldout_ratio:.3f}", note)  # fmt: skip
    return table


def error_table(result: Calibrated) -> Table:
    prov = result.document.provenance
    table = Table(title=f"{result.document.id}: error per regime ({prov.points} points)")
    for column in ("regime", "points", "fit median |err|", "held-out median |err|", "held-out median ratio",
                   "held-out worst ratio"):  # fmt: skip
        table.add_column(column, justify="left" if column == "regime" else "right")
    for regime, held in prov.heldout_error.items():
        fit = prov.fit_error[regime]
        table.add_row(regime, str(held.points), f"{fit.median_abs_pct:.1f}%", f"{held.median_abs_pct:.1f}%",
                      f"{held.median_ratio:.3f}", f"{held.worst_ratio:.3f}")  # fmt: skip
    return table


@app.command("calibrate")
def calibrate_command(
    measurements: Annotated[
        list[Path], typer.Argument(help="JSONL measurements, CSV with measured_s, or vllm bench JSON")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="calibration YAML to write")],
    kind: Annotated[
        KindChoice | None, typer.Option("--kind", help="gpu or allreduce (when the files hold both)")
    ] = None,
    cal_id: Annotated[
        str | None, typer.Option("--id", help="calibration id (default: <gpu>-vllm / <link>-allreduce)")
    ] = None,
    prior: Annotated[
        Path | None, typer.Option("--prior", help="GPU calibration whose values fill unfitted terms")
    ] = None,
    max_error: Annotated[
        float, typer.Option("--max-error", min=0, help="refuse above this held-out median |error| %")
    ] = 15.0,
    force: Annotated[
        bool, typer.Option("--force", help="write even when the held-out error is above --max-error")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no per-point residual table")] = False,
    date: Annotated[str | None, typer.Option("--date", help="provenance date (default: today)")] = None,
    gpu: GpuOpt = None,
    model: ModelOpt = None,
    tp: TpOpt = None,
    phase: PhaseOpt = None,
    scope: ScopeOpt = None,
    tokens: TokensOpt = None,
    batch: BatchOpt = None,
    context: ContextOpt = None,
    dtype: DtypeOpt = None,
    output_len: Annotated[
        int | None, typer.Option("--output-len", min=1, help="vllm bench latency: output tokens")
    ] = None,
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Fit cost-model factors from measurements; print per-point residuals and the held-out error per regime.

    vllm bench JSON files take their case from --gpu, --model, --tp, --phase, --batch, --tokens/--context.
    Long because Typer reads one parameter per option from the signature; the body is a dozen lines.
    """
    catalog = catalog_from(profiles, calibration)
    case = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in dict(
        gpu=gpu, model=model, tp=tp, phase=phase, scope=scope, tokens=tokens, batch=batch, context=context, dtype=dtype
    ).items() if v is not None}  # fmt: skip
    records, sources = read_measurements(measurements, case, output_len)
    command = "hexplan calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    result = run_calibration(
        records, catalog, kind=kind.value if kind else None, cal_id=cal_id, sources=sources, prior=prior,
        date=date or Date.today().isoformat(), command=command,
    )  # fmt: skip
    if not quiet:
        console.print(residual_table(result))
    console.print(error_table(result))
    worst = result.worst_heldout_pct
    if worst > max_error and not force:
        raise InputError(
            f"calibrate: the held-out median error reaches {worst:.1f}% in some regime (limit {max_error:g}%); "
            f"{output} was not written.",
            hint="add measurements, check them for outliers, or pass --force to write it anyway",
        )
    write_atomic(output, calibration_yaml(result))
    console.print(
        f"wrote {output} ({result.document.kind} calibration {result.document.id}, worst held-out {worst:.1f}%)"
    )


class DeviceChoice(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def _profile_models(names: list[str], catalog: Catalog) -> dict[str, ModelProfile]:
    models = {}
    for name in names:
        if name.endswith(".json"):
            models[name] = model_from_hf_config(Path(name))
        else:
            try:
                models[name] = catalog.model(name)
            except LookupError as exc:
                raise InputError(f"--model: {exc}.", hint="or give a path to a Hugging Face config.json") from None
    return models


def _device(choice: DeviceChoice) -> tuple[str, float]:
    """(device, memory bytes of one device): auto picks CUDA when PyTorch sees a GPU."""
    torch = import_torch()
    device = choice.value if choice is not DeviceChoice.auto else ("cuda" if torch.cuda.is_available() else "cpu")
    memory = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else float("inf")
    return device, memory


@app.command("profile")
def profile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="measurements JSONL to write")],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU type these measurements are of (profiles/gpus.yaml key)")],
    models: Annotated[list[str], typer.Option("--model", help="catalogue model or config.json; repeatable")],
    tps: Annotated[
        list[int] | None, typer.Option("--tp", min=1, max=64, help="TP sizes; repeatable (default 1)")
    ] = None,
    device: Annotated[
        DeviceChoice, typer.Option("--device", help="cuda, cpu (small shapes), or auto")
    ] = DeviceChoice.auto,
    dtype: Annotated[str, typer.Option("--dtype", help="float16 or bfloat16")] = "bfloat16",
    interconnect: LinkOpt = None,
    vllm: Annotated[
        bool, typer.Option("--vllm/--no-vllm", help="also time engine steps with vllm bench latency")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    profiles: ProfilesOption = None,
) -> None:
    """Measure GEMMs, attention and all-reduce on the local GPUs (or CPU) with PyTorch into measurements JSONL."""
    catalog = catalog_from(profiles)
    try:
        gpu_key = catalog.gpu(gpu).key
        link = catalog.link(interconnect or catalog.gpu(gpu).intra_node_link).key
    except LookupError as exc:
        raise InputError(f"profile: {exc}.") from None
    if dtype not in ("float16", "bfloat16"):
        raise InputError(f"--dtype: expected float16 or bfloat16, got {dtype!r}.")
    where, memory = _device(device)
    request = ProfileRequest(
        gpu=gpu_key, models=_profile_models(models, catalog), tps=tuple(sorted(set(tps or [1]))), device=where,
        dtype=dtype, interconnect=link, sweep=Sweep.cpu() if where == "cpu" else Sweep(), memory_bytes=memory,
        vllm=vllm and where == "cuda",
    )  # fmt: skip
    tasks = plan_tasks(request)
    with Progress(
        TextColumn("[bold]profiling[/] {task.fields[now]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console_err, transient=True, disable=quiet,
    ) as bar:  # fmt: skip
        handle = bar.add_task("profile", total=len(tasks), now="")

        def advance(task: Task) -> None:
            bar.update(handle, advance=1, now=f"{task.kind} {task.model or ''} tp={task.tp}")

        records = run_profile(request, advance)
    meta = {"source": "hexplan profile", "device": where, "gpu": gpu_key, "date": Date.today().isoformat(),
            "command": "hexplan " + " ".join(shlex.quote(a) for a in sys.argv[1:])}  # fmt: skip
    write_atomic(output, write_jsonl(records, meta))
    console.print(f"wrote {len(records)} measurements ({where}) to {output}")
