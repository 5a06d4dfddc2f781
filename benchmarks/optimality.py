"""How close is the scheduler to the optimum, and to the fluid upper bound?

Part 1: seeded random small clusters on skewed networks (planner.reference.synthetic.skewed_cluster:
≤ 10 GPUs on 2–4 nodes of 1, 2, 4 or 8 GPUs, NICs and links of 1–400 Gbit/s, some single slow
links). planner.reference.exact enumerates every grouping × role × TP × node order × layer split,
independently of the scheduler, and scores each plan with evaluate's max-flow; we print solve()'s
ratio to it. Instances the oracle cannot finish within --oracle-limit seconds (or whose model fits
nowhere) are listed and skipped, never guessed.
Part 2 (--bound): the examples (up to 1024 GPUs): the plan's ratio to the LP fluid upper bound.

    .venv/bin/python benchmarks/optimality.py [--instances 40] [--time-limit 20] [--bound]
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
from planner.reference.exact import TooLarge, exact_optimum
from planner.reference.synthetic import skewed_cluster, write_cluster

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TARGET = 0.99


def describe(spec: dict) -> str:
    nodes = ", ".join(f"{n['gpu']}×{n['count']}@{n['nic'].removesuffix('bps')}" for n in spec["nodes"])
    slow = "".join(
        f" {'–'.join(link['between'])}:{link['bandwidth'].removesuffix('bps')}" for link in spec["network"]["links"]
    )
    return f"{nodes}; net {spec['network']['default']['bandwidth'].removesuffix('bps')}{slow}"


def small_instances(count: int, time_limit: float, oracle_limit: float, console: Console) -> list[float]:
    catalog = load_catalog()
    table = Table(title=f"scheduler vs exact optimum ({count} seeded skewed clusters, ≤ 10 GPUs)")
    for column in (
        "seed",
        "GPUs",
        "model",
        "nodes; network (Gbit/s)",
        "optimum",
        "solve",
        "ratio",
        "exact s",
        "solve s",
    ):
        table.add_column(column, justify="right" if column not in ("model", "nodes; network (Gbit/s)") else "left")
    ratios, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        seed = 0
        while len(ratios) < count:
            spec = skewed_cluster(np.random.default_rng(seed))
            path = write_cluster(spec, Path(tmp) / f"c{seed}.yaml")
            seed += 1
            try:
                cluster = load_cluster(path, catalog)
                t0 = time.perf_counter()
                optimum = exact_optimum(cluster, time_limit=oracle_limit).throughput_rps
                t1 = time.perf_counter()
                plan = solve(cluster, seed=0, time_limit=time_limit)
                t2 = time.perf_counter()
            except (PlannerError, TooLarge) as exc:
                skipped.append(f"{seed - 1} ({type(exc).__name__})")
                continue
            if optimum <= 0:
                skipped.append(f"{seed - 1} (nothing serves)")
                continue
            ratio = plan.summary.throughput_rps / optimum
            ratios.append(ratio)
            table.add_row(
                str(seed - 1), str(len(cluster.gpus)), cluster.model.name, describe(spec), f"{optimum:.3f}",
                f"{plan.summary.throughput_rps:.3f}", f"{ratio:.2%}", f"{t1 - t0:.1f}", f"{t2 - t1:.1f}",
            )  # fmt: skip
    table.caption = (
        f"ratio: min {min(ratios):.2%}, median {statistics.median(ratios):.2%}, mean {statistics.mean(ratios):.2%}; "
        f"below {TARGET:.0%}: {sum(r < TARGET for r in ratios)}/{len(ratios)}; "
        f"skipped seeds: {', '.join(skipped) or 'none'}"
    )
    console.print(table)
    return ratios


def examples_vs_bound(time_limit: float, console: Console) -> None:
    catalog = load_catalog()
    table = Table(title="plans vs the fluid upper bound (LP relaxation)")
    for column in ("example", "GPUs", "bound req/s", "plan req/s", "plan / bound"):
        table.add_column(column, justify="right")
    for path in sorted(p for p in EXAMPLES.glob("*.yaml") if not p.name.startswith("offers-")):
        cluster = load_cluster(path, catalog)
        bound = fluid_upper_bound(cluster)
        plan = solve(cluster, seed=0, time_limit=time_limit, objective="throughput")
        table.add_row(
            path.name, str(len(cluster.gpus)), f"{bound:.2f}", f"{plan.summary.throughput_rps:.2f}",
            f"{plan.summary.throughput_rps / bound:.1%}",
        )  # fmt: skip
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--time-limit", type=float, default=20.0, help="solve()'s time limit per instance")
    parser.add_argument("--oracle-limit", type=float, default=300.0, help="seconds before the oracle gives up")
    parser.add_argument("--bound", action="store_true", help="also compare the examples with the fluid bound")
    args = parser.parse_args()
    console = Console(width=200)
    ratios = small_instances(args.instances, args.time_limit, args.oracle_limit, console)
    if args.bound:
        examples_vs_bound(60.0, console)
    return 0 if min(ratios) >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
