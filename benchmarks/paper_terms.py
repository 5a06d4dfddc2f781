"""Which cost terms decide heterogeneous vs 8×H100 at equal price (issue 12, the paper table's explanation).

For Llama-2-70B on a TP-4 group of each GPU type of the paper's settings (its own intra-node link), one
decode step of a batch of `--batch` sequences at the LPHD workload's mean context, and one prefill batch of
`--prompts` 1024-token prompts: the calibrated model's seconds per term (planner.costs.stepmodel.TERMS:
GEMMs, elementwise, attention, TP all-reduce, LM head, step overhead), tokens/s, and tokens/s per $/h of the
four GPUs (catalogue prices, profiles/gpus.yaml). All 80 layers on the group whether or not they fit its
memory: the planner pipelines 48 GB cards across nodes, which splits the same work over more GPUs (it
does not change work per $ beyond the pipeline hops, which only add).

Usage: .venv/bin/python benchmarks/paper_terms.py [--batch 64] [--prompts 8]
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from planner.costs.allreduce import allreduce_seconds
from planner.costs.predict import kv_replication
from planner.costs.stepmodel import TERMS, decode_work, gpu_factors, prefill_work, terms
from planner.inputs.catalog import DTYPE_BYTES, load_catalog

GROUPS = (("H100-SXM", "nvlink4"), ("A100-80G", "nvlink3"), ("L40", "pcie4"), ("RTX-A6000", "pcie4"))
TP = 4
CONTEXT = 1024 + 128  # LPHD-like: prompt plus half of a long answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="decode sequences per step")
    parser.add_argument("--prompts", type=int, default=8, help="1024-token prompts per prefill batch")
    args = parser.parse_args()
    catalog = load_catalog()
    model = catalog.model("llama-2-70b")
    b = DTYPE_BYTES["float16"]
    table = Table(title=f"Llama-2-70B on TP-{TP} groups: seconds per term, tokens/s and tokens/s per $/h")
    for column in ("GPU (link)", "phase", *TERMS, "step s", "tokens/s", "$/h", "tokens/s per $/h"):
        table.add_column(column, justify="left" if column in ("GPU (link)", "phase") else "right")
    for key, link_name in GROUPS:
        gpu, link = catalog.gpu(key), catalog.link(link_name)
        factors = gpu_factors(gpu, "float16", TP)
        price = TP * gpu.price_per_hour
        tokens = args.prompts * 1024
        cases = {
            "decode": (
                decode_work(
                    model, TP, b, model.layers, args.batch, CONTEXT, kv_replication(model, TP),
                    allreduce_s=2 * allreduce_seconds(link, TP, args.batch * model.hidden * b), lm_head=True, steps=1.0,
                ),
                args.batch,
            ),
            "prefill": (
                prefill_work(
                    model, TP, b, model.layers, args.prompts, tokens, args.prompts * 1024**2,
                    allreduce_s=2 * allreduce_seconds(link, TP, tokens * model.hidden * b), lm_head=True, steps=1.0,
                ),
                tokens,
            ),
        }  # fmt: skip
        for phase, (work, produced) in cases.items():
            parts = terms(factors, work)
            step = sum(parts.values())
            table.add_row(
                f"{key} ({link_name})",
                phase,
                *(f"{parts[t] * 1e3:.1f} ms" for t in TERMS),
                f"{step:.3f}",
                f"{produced / step:,.0f}",
                f"{price:.2f}",
                f"{produced / step / price:,.0f}",
            )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
