"""Regenerate profiles/calibrations/*.yaml from profiles/measurements/ with `hexplan calibrate`.

Each file is produced by the same command a user runs (the Typer app is invoked in-process with the
arguments shown in the file's provenance.command), so the shipped calibrations and user calibrations
come from one code path. Run from the repository root:

    .venv/bin/python scripts/calibrate_public.py            # rewrites profiles/calibrations/*.yaml
    git diff profiles/calibrations/                          # review

Choices (README: calibration files; benchmarks/RESULTS.md: what is fitted and what is prior):
- GPU files fit AIConfigurator's composed vLLM layer times together with Vidur's operator times where
  Vidur has the GPU (A100, H100: the only data that include norms/RoPE/activation, so τ_layer is fitted
  there); H200 borrows τ_layer from H100 (same GH100 compute die), L40S from A100 (the only other
  PCIe-class data set) through --prior.
- All-reduce files fit AIConfigurator's NCCL and vLLM custom all-reduce tables (one engine and NCCL
  version per machine); Vidur's all-reduce tables are kept out of the fit and used as a per-source
  hold-out in benchmarks/costmodel_fidelity.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.cli import app  # noqa: E402

MEAS = "profiles/measurements"
OUT = "profiles/calibrations"
DATE = "2026-11-30"  # the date of the measurement conversion; keeps the output byte-identical

GPU_RUNS = [
    ("a100-80g-vllm", ["aiconfigurator-a100-80g.jsonl", "vidur-a100-80g.jsonl"], None),
    ("h100-sxm-vllm", ["aiconfigurator-h100-sxm.jsonl", "vidur-h100-sxm.jsonl"], None),
    ("h200-sxm-vllm", ["aiconfigurator-h200-sxm.jsonl"], "h100-sxm-vllm"),
    ("l40s-vllm", ["aiconfigurator-l40s.jsonl"], "a100-80g-vllm"),
]
ALLREDUCE_RUNS = [
    ("nvlink3-allreduce", ["aiconfigurator-a100-80g.jsonl"]),
    ("nvlink4-allreduce", ["aiconfigurator-h100-sxm.jsonl", "aiconfigurator-h200-sxm.jsonl"]),
    ("pcie4-allreduce", ["aiconfigurator-l40s.jsonl"]),
    ("pcie5-allreduce", ["aiconfigurator-rtx-pro-6000.jsonl"]),
]


def run(args: list[str]) -> None:
    print("hexplan " + " ".join(args), flush=True)
    sys.argv = ["hexplan", *args]  # what the file's provenance.command records
    app(args=args, prog_name="hexplan", standalone_mode=False)


def main() -> None:
    for cal_id, files, prior in GPU_RUNS:
        args = ["calibrate", *(f"{MEAS}/{f}" for f in files), "--kind", "gpu", "--id", cal_id]
        args += ["-o", f"{OUT}/{cal_id}.yaml", "--date", DATE, "--quiet"]
        if prior:
            args += ["--prior", f"{OUT}/{prior}.yaml"]
        run(args)
    for cal_id, files in ALLREDUCE_RUNS:
        args = ["calibrate", *(f"{MEAS}/{f}" for f in files), "--kind", "allreduce", "--id", cal_id]
        run([*args, "-o", f"{OUT}/{cal_id}.yaml", "--date", DATE, "--quiet"])


if __name__ == "__main__":
    main()
