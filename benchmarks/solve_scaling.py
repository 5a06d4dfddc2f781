"""Solve time, peak memory and plan quality from 8 to 4096 GPUs.

Generated heterogeneous clusters (planner.reference.synthetic.large_cluster): 3 GPU types (H100-SXM,
A100-80G, L40S) in 8-GPU nodes (2- and 4-GPU nodes below 24 GPUs so three types exist, serving
Qwen2.5-32B there since 70B cannot decode on a 2-GPU node), two network tiers (two zones:
200 Gbit/s inside, 50 Gbit/s across), Llama-3.1-70B. Each size is
solved in a fresh subprocess so its peak RSS is its own. Targets on a 2-core machine (issue 13):
2048 GPUs converged in ≤ 30 s, 4096 GPUs in ≤ 60 s, ≤ 1 GiB; "solve s" is solve() alone (after
loading the cluster), "total s" the whole process.

    .venv/bin/python benchmarks/solve_scaling.py [--sizes 8 16 … 4096] [--time-limit 60] [--repeat 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

SIZES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
SMALL_MODEL, LARGE_MODEL = "qwen2.5-32b", "llama-3.1-70b"


def one(gpus: int, time_limit: float) -> dict:
    """Solve one generated cluster in this process and report figures as a dict."""
    from planner import solve, write_plan
    from planner.inputs.catalog import load_catalog
    from planner.inputs.cluster import load_cluster
    from planner.reference.bounds import fluid_upper_bound
    from planner.reference.synthetic import large_cluster, write_cluster

    node_size = 2 if gpus < 16 else 4 if gpus < 24 else 8
    model = SMALL_MODEL if gpus < 24 else LARGE_MODEL  # 70B cannot decode on one 2- or 4-GPU node of every type
    spec = large_cluster(np.random.default_rng(gpus), gpus, node_size=node_size, model=model)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = load_cluster(write_cluster(spec, Path(tmp) / "cluster.yaml"), load_catalog())
        began = time.perf_counter()
        plan = solve(cluster, seed=0, time_limit=time_limit)
        seconds = time.perf_counter() - began
        bound = fluid_upper_bound(cluster)
        write_plan(plan, Path(tmp) / "plan.yaml")
        text = (Path(tmp) / "plan.yaml").read_text().replace(tmp, "<tmp>")  # the plan records the cluster's path
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return {
        "gpus": len(cluster.gpus),
        "model": model,
        "seconds": seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "throughput": plan.summary.throughput_rps,
        "bound": bound,
        "replicas": len(plan.replicas),
        "gpus_used": plan.summary.gpus_used,
        "k_tried": plan.solver.k_tried,
        "iterations": plan.solver.iterations,
        "converged": plan.solver.converged,
        "plan_sha256": digest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (the plan digests show determinism)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.time_limit)))
        return 0
    table = Table(title=f"hexplan solve scaling (time limit {args.time_limit:g} s, seed 0)")
    for column in (
        "GPUs",
        "model",
        "solve s",
        "peak MiB",
        "req/s",
        "bound req/s",
        "plan/bound",
        "replicas",
        "GPUs used",
        "K tried",
        "steps",
        "converged",
        "plan sha256",
        "total s",
        "load",
    ):
        table.add_column(column, justify="right")
    for size in [s for s in args.sizes for _ in range(args.repeat)]:
        load = os.getloadavg()[0]
        began = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--time-limit", str(args.time_limit)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        total = time.perf_counter() - began
        r = json.loads(out)
        table.add_row(
            str(r["gpus"]),
            r["model"],
            f"{r['seconds']:.2f}",
            f"{r['peak_mib']:.0f}",
            f"{r['throughput']:.1f}",
            f"{r['bound']:.1f}",
            f"{r['throughput'] / r['bound']:.1%}",
            str(r["replicas"]),
            str(r["gpus_used"]),
            str(r["k_tried"]),
            str(r["iterations"]),
            "yes" if r["converged"] else "no",
            r["plan_sha256"],
            f"{total:.1f}",
            f"{load:.1f}",
        )
    Console(width=200).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
