"""How close is the heuristic scheduler to the optimum, and to the fluid upper bound?

Part 1: ≥ 20 seeded random small clusters (≤ 12 GPUs, 2–3 GPU types): planner.reference.exact enumerates
every grouping × role × layout under the same cost model; we print solve()'s ratio to it.
Part 2: the examples (up to 1024 GPUs): the plan's ratio to the LP fluid upper bound.

    .venv/bin/python benchmarks/optimality.py [--instances 24] [--time-limit 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from planner import solve
from planner.errors import PlannerError
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.reference.bounds import fluid_upper_bound
from planner.reference.exact import exact_optimum
from planner.reference.synthetic import small_cluster, write_cluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def small_instances(count: int, time_limit: float, console: Console) -> list[float]:
    catalog = load_catalog()
    table = Table(title=f"heuristic vs exhaustive optimum ({count} random clusters, ≤ 12 GPUs)")
    for column in ("seed", "GPUs", "types", "model", "optimum req/s", "solve req/s", "ratio", "exact s", "solve s"):
        table.add_column(column, justify="right")
    ratios = []
    models = ("llama-3.1-8b", "llama-2-13b", "qwen2.5-7b", "llama-2-7b")
    with tempfile.TemporaryDirectory() as tmp:
        seed = 0
        while len(ratios) < count:
            rng = np.random.default_rng(seed)
            spec = small_cluster(rng, model=models[seed % len(models)])
            path = write_cluster(spec, Path(tmp) / f"c{seed}.yaml")
            seed += 1
            try:
                cluster = load_cluster(path, catalog)
                t0 = time.perf_counter()
                optimum = exact_optimum(cluster).throughput_rps
                t1 = time.perf_counter()
                plan = solve(cluster, seed=0, time_limit=time_limit)
                t2 = time.perf_counter()
            except PlannerError:
                continue  # the model fits nowhere on this draw
            if optimum <= 0:
                continue
            ratio = plan.summary.throughput_rps / optimum
            ratios.append(ratio)
            types = "+".join(sorted({n["gpu"] for n in spec["nodes"]}))
            table.add_row(
                str(seed - 1),
                str(len(cluster.gpus)),
                types,
                cluster.model.name,
                f"{optimum:.3f}",
                f"{plan.summary.throughput_rps:.3f}",
                f"{ratio:.1%}",
                f"{t1 - t0:.1f}",
                f"{t2 - t1:.2f}",
            )
    table.caption = (
        f"ratio: min {min(ratios):.1%}, median {statistics.median(ratios):.1%}, mean {statistics.mean(ratios):.1%}; "
        f"≥ 98 %: {sum(r >= 0.98 for r in ratios)}/{len(ratios)}"
    )
    console.print(table)
    return ratios


def examples_vs_bound(time_limit: float, console: Console) -> None:
    catalog = load_catalog()
    table = Table(title="plans vs the fluid upper bound (LP relaxation)")
    for column in ("example", "GPUs", "bound req/s", "plan req/s", "plan / bound"):
        table.add_column(column, justify="right")
    for path in sorted(EXAMPLES.glob("*.yaml")):
        cluster = load_cluster(path, catalog)
        bound = fluid_upper_bound(cluster)
        plan = solve(cluster, seed=0, time_limit=time_limit, objective="throughput")
        table.add_row(
            path.name,
            str(len(cluster.gpus)),
            f"{bound:.2f}",
            f"{plan.summary.throughput_rps:.2f}",
            f"{plan.summary.throughput_rps / bound:.1%}",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=24)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--skip-bound", action="store_true")
    args = parser.parse_args()
    console = Console(width=160)
    ratios = small_instances(args.instances, args.time_limit, console)
    if not args.skip_bound:
        examples_vs_bound(60.0, console)
    return 0 if min(ratios) >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
