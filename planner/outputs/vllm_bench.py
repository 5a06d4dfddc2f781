"""A plan's promise as `vllm bench serve` runs against the deployed router, to measure what it delivers.

The script (bash, one `vllm bench serve` per line, argv quoted with shlex) sends:
- Poisson requests at the plan's promised rate (summary.goodput_rps with an SLO, else throughput_rps) and
  at 80 % of it (the load
  `hexplan simulate` defaults to), with the workload's mean prompt and output lengths (vLLM's
  `random` dataset, `--ignore-eos` so every answer has the planned length), for 300 s each;
- when the plan's workload is a trace: the trace itself, replayed on its own clock (`timed_trace`
  dataset, `--self-timed` by default there) and compressed so its mean rate is the promised rate. The
  trace goes to a Mooncake-style JSON Lines file beside the script: `timestamp` (ms from the first
  request), `input_length`, `output_length`, and `hash_ids`, one distinct id per 512-token block
  (vLLM builds each prompt from these blocks; distinct ids mean no shared prefixes, as our cost model
  assumes).
Every run reports TTFT/TPOT/ITL/E2E percentiles and goodput under the plan's SLO (`--goodput`; none without) and
saves its result JSON (`--save-result`). Flags as in vLLM 0.32/0.33's `vllm/benchmarks/serve.py` and
`vllm/benchmarks/datasets/datasets.py`; `make test-vllm` parses every line with vLLM's own parser.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Sequence

from planner import __version__
from planner.inputs.problem import Cluster
from planner.inputs.workload import Trace
from planner.plans.schema import Plan
from planner.sim.sweeps import DEFAULT_LOAD

BLOCK_TOKENS = 512
DURATION_S = 300.0
LOADS = (("promise", 1.0), ("simulate-load", DEFAULT_LOAD))  # the promised rate, and what `simulate` offers


def timed_trace_jsonl(trace: Trace) -> str:
    """The trace as Mooncake-style JSON Lines (module docstring), in arrival order."""
    lines, block = [], 0
    for t, p, o in zip(trace.arrival_s, trace.prompt, trace.output, strict=True):
        blocks = -(-int(p) // BLOCK_TOKENS)
        entry = {"timestamp": round(float(t) * 1000), "input_length": int(p), "output_length": int(o)}
        lines.append(json.dumps(entry | {"hash_ids": list(range(block, block + blocks))}))
        block += blocks
    return "\n".join(lines) + "\n"


def _common(plan: Plan, cluster: Cluster, router_url: str, result_dir: str, name: str) -> list[str]:
    """vllm bench serve's shared flags; `--goodput` with the SLO the cluster carries (the plan's, as the
    exporting command resolved it), none without one."""
    slo = cluster.slo
    goodput = (
        []
        if slo is None
        else ["--goodput"]
        + [f"{name}:{seconds * 1e3:g}" for name, seconds in (("ttft", slo.ttft), ("tpot", slo.tpot)) if seconds]
    )
    return [
        "vllm", "bench", "serve", "--backend", "vllm", "--base-url", router_url, "--endpoint", "/v1/completions",
        "--model", plan.model, "--tokenizer", plan.model_path or plan.model, "--ignore-eos",
        "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
        *goodput, "--seed", "0",
        "--save-result", "--result-dir", result_dir, "--result-filename", f"{name}.json",
    ]  # fmt: skip


def bench_commands(
    plan: Plan, cluster: Cluster, router_url: str, result_dir: str, trace: Trace | None, trace_file: str | None
) -> list[tuple[str, list[str]]]:
    """(what it measures, argv) of every run (module docstring)."""
    promised = plan.summary.goodput_rps or plan.summary.throughput_rps  # the promise: goodput with an SLO
    isl, osl = round(cluster.workload.prompt.mean), round(cluster.workload.output.mean)
    runs = []
    for name, share in LOADS:
        rate = promised * share
        argv = _common(plan, cluster, router_url, result_dir, name)
        argv += ["--dataset-name", "random", "--random-input-len", str(isl), "--random-output-len", str(osl)]
        argv += ["--random-range-ratio", "0", "--request-rate", f"{rate:.6g}"]
        argv += ["--num-prompts", str(max(200, math.ceil(rate * DURATION_S)))]
        runs.append((f"Poisson at {share:.0%} of the promised {promised:.4g} req/s, mean lengths {isl}/{osl}", argv))
    if trace is not None and trace_file is not None and len(trace.arrival_s) > 1:
        span = float(trace.arrival_s[-1])
        speedup = (promised * span / len(trace.arrival_s)) if span > 0 else 1.0
        argv = _common(plan, cluster, router_url, result_dir, "trace")
        argv += ["--dataset-name", "timed_trace", "--dataset-path", trace_file]
        argv += ["--timed-trace-sec-multiplier", f"{0.001 / speedup:.6g}"]
        argv += ["--timed-trace-chunk-hash-size", str(BLOCK_TOKENS), "--num-prompts", str(len(trace.arrival_s))]
        runs.append((f"the workload's trace ({len(trace.arrival_s)} requests), time × 1/{speedup:.3g}", argv))
    return runs


def bench_script(plan: Plan, source: str, runs: Sequence[tuple[str, list[str]]]) -> str:
    s = plan.summary
    lines = [
        "#!/usr/bin/env bash",
        f"# hexplan {__version__} export --to vllm-bench: measure the deployment of {source} against its promise.",
        f"# The plan promises {s.throughput_rps:.4g} req/s ({s.output_tokens_per_s:.4g} output tokens/s); "
        f"unloaded TTFT {s.ttft_s * 1e3:.0f} ms, TPOT {s.tpot_s * 1e3:.1f} ms (flow-weighted means).",
        "# Needs vLLM (`vllm bench serve`) and the model's tokenizer where it runs; results: --result-dir.",
        "set -euo pipefail",
        'cd "$(dirname "$0")"  # the trace file and the results sit beside this script',
    ]
    for what, argv in runs:
        lines += ["", f"# {what}", shlex.join(argv)]
    return "\n".join(lines) + "\n"
