"""Fidelity of the cost model on measurements NOT used in its fit: before (v1 roofline) vs after (v2, calibrated).

Data: profiles/measurements/*.jsonl (NVIDIA AIConfigurator kernel tables composed into vLLM layer times;
Microsoft Vidur operator and all-reduce tables) for the catalogue GPUs A100-80G, H100-SXM, H200-SXM, L40S
and links nvlink3, nvlink4, pcie4, pcie5. Each prediction is compared with exactly what was measured:
terms a record `excludes` are left out of both models; `lower_bound` points are not truth and are skipped.

- before: the v1 roofline (git 2d21416, planner/costmodel.py): per layer max(FLOPs/(t·peak·eff_c),
  bytes/(t·bw·eff_m)) with the catalogue's planning efficiencies, ring all-reduce with the link's
  catalogue bandwidth and latency.
- after, compute: leave-one-model-out per GPU type — every model's points are predicted by a fit of the
  same GPU's other models (the same fit `hexplan calibrate` runs; H200 and L40S take their unfittable
  τ_layer from the shipped H100 / A100 calibrations, as scripts/calibrate_public.py does).
- after, all-reduce: k-fold within AIConfigurator's tables, and per-source hold-out: a link's table
  fitted on AIConfigurator only, evaluated on Vidur's NCCL measurements of the same link class.

    .venv/bin/python benchmarks/costmodel_fidelity.py
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from planner.costs.allreduce import allreduce_seconds
from planner.costs.calibrate import calibrate_allreduce
from planner.costs.fit import fit_gpu, identifiable, predict_stacked, prior_vector, stack
from planner.costs.stepmodel import prior_parameters
from planner.inputs.calibrations import read_calibration
from planner.inputs.catalog import DTYPE_BYTES, Catalog, load_catalog
from planner.inputs.measurements import Measurement, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
MEAS = ROOT / "profiles" / "measurements"
CAL = ROOT / "profiles" / "calibrations"
GPUS = {
    "A100-80G": (["aiconfigurator-a100-80g.jsonl", "vidur-a100-80g.jsonl"], None),
    "H100-SXM": (["aiconfigurator-h100-sxm.jsonl", "vidur-h100-sxm.jsonl"], None),
    "H200-SXM": (["aiconfigurator-h200-sxm.jsonl"], "h100-sxm-vllm.yaml"),
    "L40S": (["aiconfigurator-l40s.jsonl"], "a100-80g-vllm.yaml"),
}
LINKS = {  # link: (AIConfigurator files fitted, Vidur files held out)
    "nvlink3": (["aiconfigurator-a100-80g.jsonl"], ["vidur-a100-80g.jsonl"]),
    "nvlink4": (["aiconfigurator-h100-sxm.jsonl", "aiconfigurator-h200-sxm.jsonl"], ["vidur-h100-sxm.jsonl"]),
    "pcie4": (["aiconfigurator-l40s.jsonl"], ["vidur-a100-80g.jsonl"]),
    "pcie5": (["aiconfigurator-rtx-pro-6000.jsonl"], ["vidur-h100-pcie.jsonl"]),
}
REGIMES = ("prefill", "decode small batch", "decode large batch / long context", "allreduce NVLink", "allreduce PCIe")


def v1_seconds(r: Measurement, catalog: Catalog) -> float:
    """The v1 roofline's time for what the record measured (see module docstring)."""
    if r.phase == "allreduce":
        link = catalog.link(r.interconnect or "")
        steps = 2 * (r.tp - 1)
        return steps * link.latency + steps / r.tp * float(r.bytes or 0) / link.bandwidth
    gpu, m = catalog.gpu(r.gpu or ""), catalog.model(r.model or "")
    b, t = DTYPE_BYTES[r.dtype], r.tp
    kv_layer = 2 * m.kv_heads * m.head_dim * b * (t * math.ceil(m.kv_heads / t) / m.kv_heads)
    attention = "attention" not in r.excludes
    if r.phase == "prefill":
        tokens, squares, seqs = (r.batch or 1) * (r.tokens or 0), (r.batch or 1) * (r.tokens or 0) ** 2, r.batch or 1
        flops = 2 * m.params_per_layer * tokens + attention * 2 * m.heads * m.head_dim * squares
        nbytes = m.params_per_layer * b + tokens * (2 * m.hidden * b + attention * kv_layer)
    else:
        tokens = seqs = r.batch or 1
        flops = tokens * (2 * m.params_per_layer + attention * 4 * (r.context or 0) * m.heads * m.head_dim)
        nbytes = m.params_per_layer * b + attention * tokens * (r.context or 0) * kv_layer
    peak, bw = gpu.flops(r.dtype) * gpu.compute_efficiency, gpu.memory_bandwidth * gpu.memory_efficiency
    layer = max(flops / (t * peak), nbytes / (t * bw))
    if "allreduce" not in r.excludes and t > 1:
        link = catalog.link(r.interconnect or gpu.intra_node_link)
        steps = 2 * (t - 1)
        layer += 2 * (steps * link.latency + steps / t * tokens * m.hidden * b / link.bandwidth)
    total = m.layers * layer
    if r.effective_scope == "engine":
        total += max(2 * seqs * m.vocab * m.hidden / (t * peak), m.vocab * m.hidden * b / (t * bw))
    return total


def truth(records: list[Measurement]) -> list[Measurement]:
    return [r for r in records if not r.lower_bound]


def compute_after(catalog: Catalog) -> dict[str, list[tuple[Measurement, float, str]]]:
    """Leave-one-model-out predictions per GPU: {gpu: [(record, predicted, held-out group)]}."""
    out: dict[str, list] = {}
    for gpu, (files, prior_file) in GPUS.items():
        records = [r for f in files for r in read_jsonl(MEAS / f) if r.phase != "allreduce"]
        prior = read_calibration(CAL / prior_file)[0].parameters if prior_file else prior_parameters(catalog.gpus[gpu])
        start = prior_vector(prior)
        rows = []
        for model in sorted({r.model for r in records}):
            train = [r for r in records if r.model != model]
            test = [r for r in records if r.model == model]
            values = fit_gpu(stack(train, catalog), identifiable(train), start)
            predicted = predict_stacked(values, stack(test, catalog))
            rows += [(r, float(p), model) for r, p in zip(test, predicted, strict=True)]
        out[gpu] = rows
    return out


def allreduce_after(catalog: Catalog) -> tuple[list[tuple[Measurement, float]], list[tuple[Measurement, float]]]:
    """(k-fold within AIConfigurator, per-source hold-out on Vidur) predictions of all-reduce records."""
    kfold, per_source = [], []
    for link, (fitted_files, held_files) in LINKS.items():
        fitted = [r for f in fitted_files for r in read_jsonl(MEAS / f) if r.phase == "allreduce"]
        result = calibrate_allreduce(fitted, catalog, cal_id=f"{link}-bench", sources=[])
        kfold += [(res.record, res.heldout_s) for res in result.residuals]
        table = result.document
        from dataclasses import replace

        from planner.inputs.calibrations import AllreduceCalibration

        cal = AllreduceCalibration(table.id, f"bench-{link}", link, tuple(table.table))
        probe = replace(catalog.links[link], allreduce=cal)
        held = [
            r for f in held_files for r in read_jsonl(MEAS / f) if r.phase == "allreduce" and r.interconnect == link
        ]
        per_source += [(r, allreduce_seconds(probe, r.tp, float(r.bytes or 0), "nccl")) for r in held]
    return kfold, per_source


def stats(pairs: list[tuple[float, float]]) -> tuple[int, float, float, float]:
    """(points, median ratio, median |error| %, worst ratio) of (predicted, measured) pairs."""
    ratios = np.array([p / m for p, m in pairs])
    worst = float(ratios[np.argmax(np.abs(np.log(ratios)))])
    return len(ratios), float(np.median(ratios)), float(np.median(np.abs(ratios - 1))) * 100, worst


def main() -> None:
    catalog = load_catalog()
    before: dict[str, list] = defaultdict(list)
    after: dict[str, list] = defaultdict(list)
    by_gpu: dict[str, list] = defaultdict(list)
    for gpu, rows in compute_after(catalog).items():
        for r, predicted, _ in rows:
            if r.lower_bound:
                continue
            before[r.regime()].append((v1_seconds(r, catalog), r.measured_s))
            after[r.regime()].append((predicted, r.measured_s))
            by_gpu[gpu].append((predicted, r.measured_s, v1_seconds(r, catalog)))
    kfold, per_source = allreduce_after(catalog)
    for r, predicted in kfold:
        if not r.lower_bound:
            before[r.regime()].append((v1_seconds(r, catalog), r.measured_s))
            after[r.regime()].append((predicted, r.measured_s))
    source_before: dict[str, list] = defaultdict(list)
    source_after: dict[str, list] = defaultdict(list)
    for r, predicted in per_source:
        source_before[r.regime()].append((v1_seconds(r, catalog), r.measured_s))
        source_after[r.regime()].append((predicted, r.measured_s))

    console = Console(width=200)
    table = Table(title="Cost model vs measurements not used in the fit (ratio = predicted / measured)")
    for column in ("regime", "hold-out", "points", "before median ratio", "before median abs err", "before worst",
                   "after median ratio", "after median abs err", "after worst"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("regime", "hold-out") else "right")

    def add(regime: str, how: str, b: list, a: list) -> None:
        nb, mb, eb, wb = stats(b)
        _, ma, ea, wa = stats(a)
        table.add_row(
            regime, how, str(nb), f"{mb:.3f}", f"{eb:.1f}%", f"{wb:.3g}", f"{ma:.3f}", f"{ea:.1f}%", f"{wa:.3g}"
        )

    for regime in REGIMES:
        how = "leave-one-model-out" if not regime.startswith("allreduce") else "5-fold (AIC)"
        add(regime, how, before[regime], after[regime])
    for regime in ("allreduce NVLink", "allreduce PCIe"):
        if source_after[regime]:
            add(regime, "per source: fit AIC, test Vidur", source_before[regime], source_after[regime])
    every_b = [p for regime in REGIMES for p in before[regime]]
    every_a = [p for regime in REGIMES for p in after[regime]]
    add("all regimes", "as above", every_b, every_a)
    console.print(table)

    per_gpu = Table(title="Compute points per GPU type (leave-one-model-out)")
    for column in ("GPU", "points", "before median ratio", "after median ratio", "after median abs err", "after worst"):
        per_gpu.add_column(column, justify="left" if column == "GPU" else "right")
    for gpu, rows in by_gpu.items():
        n, ma, ea, wa = stats([(p, m) for p, m, _ in rows])
        _, mb, _, _ = stats([(v, m) for _, m, v in rows])
        per_gpu.add_row(gpu, str(n), f"{mb:.3f}", f"{ma:.3f}", f"{ea:.1f}%", f"{wa:.3g}")
    console.print(per_gpu)


if __name__ == "__main__":
    main()
