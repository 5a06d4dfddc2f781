"""The paper's budget question, asked of `hexplan provision`: at the price of 8×H100, which mix of H100,
A100-80G, L40 and RTX A6000 does it rent, and what does it reach at 70 % of that budget against 8×H100
at 100 %?

Usage: .venv/bin/python benchmarks/provision.py [--time-limit S] [--candidates N] [--roles R] [--[no-]verify]
       [--markdown]
Two price lists: "paper" = H100 at the paper's $3.69/GPU-h (8×H100 = $29.52/h) with the other GPUs at the
catalogue's RunPod column (the paper's own per-GPU table is not available, so this mixes two sources,
as the paper-*.yaml examples do); "runpod" = one consistent list, every GPU at the RunPod column
(8×H100 = $33.41/h). Scaling every price by one factor (e.g. $3.69 per H100-hour applied to the whole
RunPod list) changes no choice, so it is not a third run. Offers: every type as 4-GPU nodes and one
other shape (H100 and A100 8-GPU servers, L40 and A6000 2-GPU boxes); Llama-2-70B, 1024-token prompts,
256-token outputs, with and without an SLO. The 8×H100 row is provision restricted to one 8×H100 node
(the same planner, same options). Goodput = planner.provision.results.plan_goodput (the plan's
summary.goodput_rps once plans carry it, else its throughput under the SLO). Wall times are for the
whole provision call on this 2-core machine, shared with other jobs (load printed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import planner
from planner.provision.results import Candidate

PRICES = {
    "paper": {"H100-SXM": 3.69, "A100-80G": 2.736, "L40": 1.908, "RTX-A6000": 1.224},
    "runpod": {"H100-SXM": 4.176, "A100-80G": 2.736, "L40": 1.908, "RTX-A6000": 1.224},
}
SHAPES = {  # GPU type → (GPUs per node, max GPUs, interconnect, NIC) per offer
    "H100-SXM": [(8, 16, "nvlink4", "400Gbps"), (4, 8, "nvlink4", "400Gbps")],
    "A100-80G": [(8, 16, "nvlink3", "200Gbps"), (4, 8, "nvlink3", "200Gbps")],
    "L40": [(4, 16, "pcie4", "100Gbps"), (2, 8, "pcie4", "100Gbps")],
    "RTX-A6000": [(4, 24, "pcie4", "40Gbps"), (2, 8, "pcie4", "40Gbps")],
}
SLOS = {"no SLO": "", "TTFT 2 s, TPOT 100 ms": ", slo: {ttft: 2s, tpot: 100ms}"}
SERVING = """model: llama-2-70b
dtype: float16
network: {default: {bandwidth: 100Gbps, latency: 10us}}
"""


def offers_file(folder: Path, prices: dict[str, float], slo: str, only_h100_server: bool) -> Path:
    lines = []
    for gpu, shapes in SHAPES.items():
        for per_node, most, link, nic in shapes:
            if only_h100_server and (gpu != "H100-SXM" or per_node != 8):
                continue
            most = 8 if only_h100_server else most
            lines.append(
                f"  - {{gpu: {gpu}, price: ${prices[gpu]}/h, gpus_per_node: {per_node}, max_gpus: {most}, "
                f"interconnect: {link}, nic: {nic}}}"
            )
    path = folder / f"offers-{len(list(folder.iterdir()))}.yaml"
    workload = f"workload: {{prompt_tokens: 1024, output_tokens: 256{slo}}}\n"
    path.write_text(SERVING + workload + "offers:\n" + "\n".join(lines) + "\n")
    return path


def run(path: Path, budget: float, args: argparse.Namespace) -> tuple[Candidate, float, int]:
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        result = planner.provision_offers(
            path,
            out,
            budget=budget,
            time_limit=args.time_limit,
            candidates=args.candidates,
            roles=args.roles,
            verify=args.verify,
        )
    return result.chosen, time.monotonic() - began, result.solves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per full solve")
    parser.add_argument("--candidates", type=int, default=4, help="mixes of the first cut planned in full")
    roles = ["mixed", "disaggregated", "colocated"]
    parser.add_argument("--roles", default="mixed", choices=roles, help="replica roles, as for solve")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None, help="as for solve")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for RESULTS.md)")
    args = parser.parse_args()
    columns = ("prices", "SLO", "setting", "$/h", "mix", "cut req/s", "goodput req/s", "× 8×H100", "$/M tokens")
    columns += ("bottleneck", "s (solves)")
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for list_name, prices in PRICES.items():
            server = 8 * prices["H100-SXM"]
            for slo_name, slo in SLOS.items():
                h100, seconds, _ = run(offers_file(folder, prices, slo, True), server, args)
                runs = [("8×H100 (100 %)", h100, seconds, 1)]
                everything = offers_file(folder, prices, slo, False)
                for share in (1.0, 0.7):
                    chosen, seconds, solves = run(everything, server * share, args)
                    runs.append((f"provision {share:.0%}", chosen, seconds, solves))
                for setting, c, seconds, solves in runs:
                    ratio = c.goodput_rps / h100.goodput_rps if h100.goodput_rps > 0 else float("nan")
                    rows.append(
                        (list_name, slo_name, setting, f"{c.cost_per_hour:.2f}", c.label,
                         f"{c.proposal.goodput_rps:.2f}", f"{c.goodput_rps:.2f}",
                         f"{ratio:.2f}", f"{c.usd_per_million_tokens:.3f}", c.bottleneck, f"{seconds:.1f} ({solves})")
                    )  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        table = Table(title="provision at the price of 8×H100 and at 70 % of it (Llama-2-70B, 1024/256 tokens)")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console(width=220).print(table)
    print(f"load average (1 min) before: {load:.2f}, after: {os.getloadavg()[0]:.2f}; s = wall seconds of the call")


if __name__ == "__main__":
    main()
