"""`hexplan validate` time and peak memory from 200 to 20,000 single-GPU nodes (issue 9 item 5).

Each cluster: N one-GPU nodes of four GPU types in three zones, `network: {default, cross_zone}`
and one per-pair override, Llama-3.1-8B. Each size runs the real `hexplan validate` in a fresh
subprocess, so its time includes start-up, YAML parsing, schema validation, resolution, the
reachability check and the printed tables, and its peak RSS is its own. Target: 20,000 nodes
in < 20 s on a 2-core machine, time about linear in N.

    .venv/bin/python benchmarks/validate_scaling.py [--sizes 200 2000 20000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SIZES = (200, 2000, 20000)
GPUS = ("A100-80G", "L40", "H100-SXM", "RTX-A6000")


def cluster_text(n: int) -> str:
    lines = ["model: llama-3.1-8b", "workload: {prompt_tokens: 1024, output_tokens: 256}", "nodes:"]
    lines += [f"  - {{name: n{i}, gpu: {GPUS[i % 4]}, count: 1, nic: 100Gbps, zone: z{i % 3}}}" for i in range(n)]
    lines += [
        "network:",
        "  default: 100Gbps",
        "  cross_zone: {bandwidth: 50Gbps, latency: 1ms}",
        "  links: [{between: [n0, n1], bandwidth: 400Gbps, latency: 2us}]",
    ]
    return "\n".join(lines) + "\n"


def measure(n: int, directory: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of `hexplan validate` on an n-node cluster, in a child process.

    CPU seconds too, because on a shared machine the wall clock mostly measures the other processes."""
    path = directory / f"nodes-{n}.yaml"
    path.write_text(cluster_text(n))
    script = (
        "import resource, sys; from planner.cli import main; sys.argv = ['hexplan', 'validate', sys.argv[1]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        "use = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(use.ru_utime + use.ru_stime, use.ru_maxrss / 1024, file=sys.stderr); sys.exit(code)"
    )
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"validate failed on {n} nodes:\n{done.stderr}")
    cpu, peak = (float(x) for x in done.stderr.strip().splitlines()[-1].split())
    return seconds, cpu, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    table = Table(title="hexplan validate on N single-GPU nodes (fresh process each)")
    for column in ("nodes", "wall s", "CPU s", "CPU µs per node", "peak MiB"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            seconds, cpu, peak = measure(n, Path(tmp))
            table.add_row(f"{n:,}", f"{seconds:.2f}", f"{cpu:.2f}", f"{cpu / n * 1e6:,.0f}", f"{peak:.0f}")
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
