"""A plan as NVIDIA AIConfigurator (AISimulate) predictions, to cross-check our cost model with theirs.

Format: the arguments of `aiconfigurator cli estimate`, as defined by `_add_estimate_mode_arguments`
in `src/aiconfigurator/cli/main.py` of github.com/ai-dynamo/aiconfigurator (read at commit 095f58a51;
its systems are `aic-core/src/aiconfigurator_core/systems/*.yaml`). For each *pool* — the plan's
replicas of one role and one shape (GPU type per stage, TP, PP, layer split) — one single-point estimate:
`--estimate-mode static_ctx` at batch 1 for prefill (ours: one prompt's latency), `static_gen` at the
replica's batch cap for decode (ours: time per output token at that batch), `agg` for colocated
replicas. When every prefill and every decode replica shares one shape, also one `disagg` estimate of
the whole plan (`--prefill-num-workers`, `--decode-num-workers`). Each entry carries our figure next
to the command, so the two predictions sit side by side.

What AIConfigurator cannot express is listed under `not_expressible` and left out of the commands:
pipeline stages on different GPU types (one `--system` per role), GPU types it has no system for
(ours are matched by name: H100 SXM/PCIe, H200, A100 80 GB SXM, L40S, L4), uneven layer splits,
several shapes per role in one disaggregated estimate, and the network between our replicas (it
assumes its system's own inter-node bandwidth). One ISL/OSL: the workload's mean prompt and output.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from planner import __version__
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan, ReplicaPlan

UPSTREAM = "github.com/ai-dynamo/aiconfigurator src/aiconfigurator/cli/main.py (estimate mode) @ 095f58a51"
SYSTEMS = {
    "H100-SXM": "h100_sxm",
    "H100-PCIe": "h100_pcie",
    "H200-SXM": "h200_sxm",
    "A100-80G": "a100_sxm",
    "L40S": "l40s",
    "L4": "l4",
}
MODE = {"prefill": "static_ctx", "decode": "static_gen", "colocated": "agg"}


def _shape(replica: ReplicaPlan) -> tuple:
    split = tuple(s.layers[1] - s.layers[0] for s in replica.stages)
    return replica.role, tuple(replica.gpu_types), replica.tp, replica.pp, split


def _problem(replica: ReplicaPlan) -> str | None:
    """Why AIConfigurator cannot estimate this replica as planned (None when it can)."""
    types = sorted(set(replica.gpu_types))
    if len(types) > 1:
        return f"pipeline stages on different GPU types ({', '.join(types)}): one --system per role"
    if types[0] not in SYSTEMS:
        return f"no AIConfigurator system for GPU type {types[0]}"
    sizes = {s.layers[1] - s.layers[0] for s in replica.stages}
    if len(sizes) > 1:
        split = "|".join(str(s.layers[1] - s.layers[0]) for s in replica.stages)
        return f"uneven layer split {split}: AIConfigurator splits layers evenly"
    return None


def estimate_argv(model: str, system: str, replica: ReplicaPlan, isl: int, osl: int) -> list[str]:
    batch = 1 if replica.role == "prefill" else replica.engine.max_num_seqs
    argv = ["aiconfigurator", "cli", "estimate", "--model-path", model, "--backend", "vllm", "--system", system]
    argv += ["--estimate-mode", MODE[replica.role], "--isl", str(isl), "--osl", str(osl)]
    return [*argv, "--tp-size", str(replica.tp), "--pp-size", str(replica.pp), "--batch-size", str(batch)]


def aisimulate_document(plan: Plan, cluster: Cluster, source: str) -> dict[str, Any]:
    """The export (module docstring) as a YAML-able mapping; deterministic for a plan."""
    model = plan.model_path or plan.model
    isl, osl = round(cluster.workload.prompt.mean), round(cluster.workload.output.mean)
    pools: dict[tuple, list[ReplicaPlan]] = defaultdict(list)
    for replica in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        pools[_shape(replica)].append(replica)
    estimates, not_expressible = [], []
    for replicas in pools.values():
        first = replicas[0]
        if (problem := _problem(first)) is not None:
            not_expressible.append(f"{first.role} replicas {', '.join(r.id for r in replicas)}: {problem}")
            continue
        ours = {"latency_ms" if first.role == "prefill" else "tpot_ms": round(first.latency_s * 1e3, 3)}
        estimates.append({
            "role": first.role, "gpu_type": first.gpu_types[0], "system": SYSTEMS[first.gpu_types[0]],
            "tp": first.tp, "pp": first.pp, "replicas": [r.id for r in replicas],
            "ours": ours | {"capacity_rps_each": round(first.capacity_rps, 6)},
            "argv": estimate_argv(model, SYSTEMS[first.gpu_types[0]], first, isl, osl),
        })  # fmt: skip
    doc: dict[str, Any] = {
        "generated_by": f"hexplan {__version__} export --to aisimulate",
        "format": UPSTREAM,
        "plan": source,
        "model": plan.model,
        "model_path": model,
        "dtype": plan.dtype,
        "workload": {"isl": isl, "osl": osl, "note": "means of the plan's workload; AIConfigurator takes one length"},
        "slo": {"ttft_ms": _ms(cluster.slo_ttft), "tpot_ms": _ms(cluster.slo_tpot)},
        "estimates": estimates,
        "disaggregated": _disagg(plan, pools, model, isl, osl, cluster),
        "not_expressible": not_expressible + _always_missing(plan, pools),
    }
    return doc


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def _disagg(plan: Plan, pools: dict, model: str, isl: int, osl: int, cluster: Cluster) -> dict[str, Any] | None:
    """One `disagg` estimate of the plan when each role has one expressible shape, else None."""
    by_role = {role: [k for k in pools if k[0] == role] for role in ("prefill", "decode", "colocated")}
    if len(by_role["prefill"]) != 1 or len(by_role["decode"]) != 1 or by_role["colocated"]:
        return None
    prefill, decode = pools[by_role["prefill"][0]], pools[by_role["decode"][0]]
    if _problem(prefill[0]) or _problem(decode[0]):
        return None
    p, d = prefill[0], decode[0]
    argv = [
        "aiconfigurator",
        "cli",
        "estimate",
        "--model-path",
        model,
        "--backend",
        "vllm",
        "--estimate-mode",
        "disagg",
    ]
    argv += ["--system", SYSTEMS[p.gpu_types[0]], "--decode-system", SYSTEMS[d.gpu_types[0]]]
    argv += ["--isl", str(isl), "--osl", str(osl)]
    argv += ["--prefill-tp-size", str(p.tp), "--prefill-pp-size", str(p.pp), "--prefill-batch-size", "1"]
    argv += ["--prefill-num-workers", str(len(prefill)), "--decode-tp-size", str(d.tp), "--decode-pp-size", str(d.pp)]
    argv += ["--decode-batch-size", str(d.engine.max_num_seqs), "--decode-num-workers", str(len(decode))]
    s = plan.summary
    ours = {"throughput_rps": s.throughput_rps, "ttft_ms": s.ttft_s * 1e3, "tpot_ms": s.tpot_s * 1e3}
    return {"argv": argv, "ours": {k: round(v, 6) for k, v in ours.items()}}


def _always_missing(plan: Plan, pools: dict) -> list[str]:
    notes = ["the network between replicas (KV routes over our links and shared NICs): AIConfigurator assumes "
             "its system's inter-node bandwidth"]  # fmt: skip
    if sum(1 for key in pools if key[0] == "prefill") > 1 or sum(1 for key in pools if key[0] == "decode") > 1:
        notes.append("several replica shapes in one role: its disagg estimate takes one shape per role, so "
                     "only the per-pool estimates above are given")  # fmt: skip
    if plan.dtype == "fp8":
        notes.append("fp8: add AIConfigurator's quantisation options (its defaults come from the HF config)")
    return notes
