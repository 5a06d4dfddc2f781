"""The seed inputs the fuzzer mutates: example clusters, plans solved at start-up, a trace, an HF config.

Plans are solved when the corpus is built (a second or two) rather than shipped, so they always
match the current planner; their cluster paths are absolute, so a case may live anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .invoke import invoke

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CLUSTER_FILES = ("tiny.yaml", "paper-hetero-1.yaml", "paper-hetero-3.yaml", "trace-conv.yaml")
TRACE_ROWS = 300
# A Llama-3.1-8B shaped Hugging Face config.json (the figures of profiles/models.yaml's llama-3.1-8b).
HF_CONFIG = {
    "model_type": "llama",
    "num_hidden_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}
CATALOGUE = {
    "gpus": {"FUZZ-GPU": {"name": "Fuzz GPU", "memory": "48GB", "memory_bandwidth": "900GB/s", "fp16": "180TFLOPS"}},
    "links": {"fuzz-link": {"kind": "intra_node", "bandwidth": "64GB/s", "latency": "2us"}},
}
PLAN_SOLVES = (("tiny.yaml",), ("tiny.yaml", "--colocated"), ("paper-hetero-1.yaml",), ("trace-conv.yaml",))


@dataclass(frozen=True)
class Corpus:
    clusters: dict[str, dict]  # name → parsed cluster (trace paths point at `trace.csv` beside the cluster)
    plans: dict[str, dict]  # name → parsed plan (cluster.file absolute)
    plan_texts: dict[str, bytes]
    trace: str  # CSV text
    gpu_ids: tuple[str, ...]

    @property
    def cluster_names(self) -> list[str]:
        return sorted(self.clusters)

    @property
    def plan_names(self) -> list[str]:
        return sorted(self.plans)


def build(directory: Path) -> Corpus:
    """Read the examples and solve the seed plans into `directory` (kept for reproducers)."""
    directory.mkdir(parents=True, exist_ok=True)
    clusters = {}
    for name in CLUSTER_FILES:
        tree = yaml.safe_load((EXAMPLES / name).read_text())
        if "trace" in tree["workload"]:
            tree["workload"]["trace"] = "trace.csv"
        clusters[name] = tree
    clusters["hf-config.yaml"] = {**clusters["tiny.yaml"], "model": "config.json"}
    trace_lines = (EXAMPLES / "traces" / "AzureLLMInferenceTrace_conv.csv").read_text().splitlines()
    trace = "\n".join(trace_lines[: TRACE_ROWS + 1]) + "\n"
    plans, texts = {}, {}
    for args in PLAN_SOLVES:
        name = "-".join(a.strip("-").removesuffix(".yaml") for a in args) + ".plan.yaml"
        path = directory / name
        solve = ["solve", str(EXAMPLES / args[0]), *args[1:], "--time-limit", "5", "-q", "-o", str(path)]
        result = invoke("hexplan", solve)
        if result.code != 0:
            raise RuntimeError(f"could not solve the corpus plan {name}: {result.stderr or result.error}")
        texts[name] = path.read_bytes()
        plans[name] = yaml.safe_load(texts[name])
    gpu_ids = tuple(sorted({g for plan in plans.values() for r in plan["replicas"] for g in r["gpus"]}))
    return Corpus(clusters, plans, texts, trace, gpu_ids)
