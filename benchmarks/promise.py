"""Does each example's plan keep its promise? Solve every example as `hexplan solve` does (examples without an
SLO get DistServe's chatbot SLO for its 66B model: TTFT 2.5 s, TPOT 150 ms), then simulate Poisson arrivals at
the plan's `goodput_rps` and report the attainment (the promise: ≥ the SLO's attainment minus two points), the
verifier's simulated goodput, the saturated throughput and which plan the verifier kept.

Usage: .venv/bin/python benchmarks/promise.py [--duration S] [--seed N]   (large-1024: 10 s search, 60 s runs)
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

import planner
from planner.inputs.problem import Slo
from planner.sim.sweeps import simulate_rate

STANDARD_SLO = Slo(ttft=2.5, tpot=0.15, attainment=0.9)
LARGE = "large-1024.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="simulated seconds at the promised rate")
    parser.add_argument("--seed", type=int, default=1, help="the simulation's seed (the verifier uses 0)")
    args = parser.parse_args()
    table = Table(title="the promise: Poisson at goodput_rps, attainment ≥ target − 2 points")
    columns = ("example", "SLO", "roles", "goodput (promised)", "attainment there", "holds", "verifier's")
    columns += ("throughput", "kept", "solve s")
    for column in columns:
        table.add_column(column, justify="left" if column in ("example", "SLO", "roles", "kept") else "right")
    for path in sorted(p for p in Path("examples").glob("*.yaml") if not p.name.startswith("offers-")):
        cluster = planner.load_cluster(path)
        if cluster.slo is None:
            cluster = dataclasses.replace(cluster, slo=STANDARD_SLO)
        large = path.name == LARGE
        began = time.monotonic()
        plan = planner.solve(cluster, seed=0, time_limit=10.0 if large else 30.0)
        seconds = time.monotonic() - began
        promised = plan.summary.goodput_rps or 0.0
        run = simulate_rate(plan, cluster, promised, duration=60.0 if large else args.duration, seed=args.seed)
        verified = plan.solver.verification
        roles = ", ".join(f"{n} {r}" for r, n in sorted(Counter(r.role for r in plan.replicas).items()))
        holds = run.slo_attainment >= cluster.slo.attainment - 0.02
        table.add_row(
            path.name,
            cluster.slo.describe(),
            roles,
            f"{promised:.2f}",
            f"{run.slo_attainment:.1%}",
            "yes" if holds else "NO",
            f"{verified.simulated_rps:.2f}" if verified else "—",
            f"{plan.summary.throughput_rps:.2f}",
            verified.chosen if verified else "(not verified)",
            f"{seconds:.1f}",
        )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
