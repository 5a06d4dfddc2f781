"""Simulated requests per wall-clock minute (target ≥ 100,000 on the 2-core dev machine).

Usage: .venv/bin/python benchmarks/sim_speed.py [--duration S]
Each example is planned with hexgen2 (seed 0) and simulated under Poisson arrivals at 90 % of the
plan's max-flow rate; wall time covers the simulation only (arrival generation included).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from planner import solve
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.sim.sweeps import simulate_rate

EXAMPLES = ["tiny.yaml", "paper-hetero-1.yaml", "paper-h100-homogeneous.yaml", "large-1024.yaml"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds per example")
    args = parser.parse_args()
    catalog = load_catalog()
    table = Table(title=f"simulator speed ({args.duration:g} simulated s per example, load 90% of max-flow)")
    for column in ("example", "replicas", "rate req/s", "requests", "wall s", "requests / wall min", "sim s / wall s"):
        table.add_column(column, justify="left" if column == "example" else "right")
    total_requests, total_wall = 0, 0.0
    for name in EXAMPLES:
        cluster = load_cluster(Path("examples") / name, catalog)
        plan = solve(cluster, seed=0, time_limit=30)
        rate = 0.9 * plan.summary.throughput_rps
        start = time.perf_counter()
        result = simulate_rate(plan, cluster, rate, duration=args.duration, seed=0)
        wall = time.perf_counter() - start
        total_requests += result.arrived
        total_wall += wall
        table.add_row(
            name,
            str(len(plan.replicas)),
            f"{rate:.1f}",
            f"{result.arrived:,}",
            f"{wall:.2f}",
            f"{result.arrived / wall * 60:,.0f}",
            f"{result.sim_seconds / wall:,.0f}",
        )
    per_minute = total_requests / total_wall * 60
    table.add_row("all", "", "", f"{total_requests:,}", f"{total_wall:.2f}", f"{per_minute:,.0f}", "")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
