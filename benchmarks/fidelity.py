"""Simulated saturation throughput vs the plan's max-flow prediction, for every example (target: within 10 %).

Usage: .venv/bin/python benchmarks/fidelity.py [--duration S] [--time-limit S]
Each example is planned by hexgen2 (seed 0); the plan is simulated under Poisson arrivals at 1.5× its
max-flow rate and the served rate is measured after a warm-up of a quarter of the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from planner import solve
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.sim.sweeps import saturation

LARGE_DURATION_S = 120.0  # large-1024 serves ~1,000 req/s: a shorter run has as many requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds per example")
    parser.add_argument("--time-limit", type=float, default=30.0, help="solver time limit per example")
    args = parser.parse_args()
    catalog = load_catalog()
    table = Table(title=f"fidelity: simulated saturation vs max-flow ({args.duration:g} s runs, 1.5× overload)")
    for column in (
        "example",
        "bottleneck",
        "max-flow req/s",
        "sim req/s",
        "sim / max-flow",
        "preemptions",
    ):
        table.add_column(column, justify="left" if column in ("example", "bottleneck") else "right")
    for path in sorted(p for p in Path("examples").glob("*.yaml") if not p.name.startswith("offers-")):
        cluster = load_cluster(path, catalog)
        plan = solve(cluster, seed=0, time_limit=args.time_limit)
        duration = LARGE_DURATION_S if len(cluster.gpus) > 256 else args.duration
        predicted = plan.summary.throughput_rps
        run = saturation(plan, cluster, duration=duration, seed=0)
        table.add_row(
            path.name,
            plan.summary.bottleneck,
            f"{predicted:.2f}",
            f"{run.throughput_rps:.2f}",
            f"{run.throughput_rps / predicted:.3f}",
            str(run.preemptions),
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
