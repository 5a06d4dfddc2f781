"""Seeded random clusters, for property tests and benchmarks.

Returns plain dicts in the cluster.yaml schema, so they go through the same validation as a
user's file (`write_cluster` then `load_cluster`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from planner.yamlio import dump_yaml, write_atomic

SMALL_GPU_TYPES = ("A100-80G", "L40", "RTX-A6000", "H100-SXM", "L4", "A10", "RTX-4090")
LARGE_GPU_TYPES = ("H100-SXM", "A100-80G", "L40S", "RTX-A6000", "A100-40G")
NICS = ("25Gbps", "100Gbps", "200Gbps", "400Gbps")


def small_cluster(rng: np.random.Generator, *, max_gpus: int = 12, model: str = "llama-3.1-8b") -> dict:
    """2–3 GPU types, nodes of 1, 2 or 4 GPUs, at most `max_gpus` GPUs, one flat network."""
    types = list(rng.choice(SMALL_GPU_TYPES, size=int(rng.integers(2, 4)), replace=False))
    nodes, total = [], 0
    while total < max_gpus:
        count = int(rng.choice([1, 2, 4]))
        if total + count > max_gpus:
            break
        gpu = str(types[len(nodes) % len(types)] if len(nodes) < len(types) else rng.choice(types))
        nodes.append({"name": f"n{len(nodes)}", "gpu": gpu, "count": count, "nic": str(rng.choice(NICS))})
        total += count
        if total >= 4 and rng.random() < 0.25:
            break
    return {
        "model": model,
        "workload": {
            "prompt_tokens": int(rng.choice([256, 512, 1024, 2048])),
            "output_tokens": int(rng.choice([64, 128, 256, 512])),
        },
        "nodes": nodes,
        "network": {"default": {"bandwidth": str(rng.choice(NICS)), "latency": "10us"}},
    }


ORACLE_GPU_TYPES = ("H200-SXM", "H100-SXM", "A100-80G", "L40", "RTX-A6000", "RTX-4090", "RTX-3090", "A10", "L4")
ORACLE_MODELS = ("llama-3.1-8b", "llama-2-7b", "qwen2.5-7b", "mistral-7b", "llama-2-13b")
GBPS = (1, 5, 10, 25, 50, 100, 200, 400)


def skewed_cluster(rng: np.random.Generator, *, max_gpus: int = 10, max_nodes: int = 4) -> dict:
    """A small cluster on a skewed network, for the exact oracle (planner.reference.exact).

    2–`max_nodes` nodes of 1, 2, 4 or 8 GPUs (at most `max_gpus` in all) of 1–3 types from
    ORACLE_GPU_TYPES; NICs and the default link drawn from 1–400 Gbit/s (GBPS), and with probability
    ½ one or two single slow links (1–10 Gbit/s) between random node pairs; a model from ORACLE_MODELS.
    """
    types = [str(t) for t in rng.choice(ORACLE_GPU_TYPES, size=int(rng.integers(1, 4)), replace=False)]
    nodes, total = [], 0
    while len(nodes) < max_nodes:
        fits = [c for c in (1, 2, 4, 8) if total + c <= max_gpus]
        if not fits or (len(nodes) >= 2 and rng.random() < 0.3):
            break
        count = int(rng.choice(fits))
        gpu = types[len(nodes) % len(types)]
        nic = f"{int(rng.choice(GBPS[2:]))}Gbps"
        nodes.append({"name": f"n{len(nodes)}", "gpu": gpu, "count": count, "nic": nic})
        total += count
    links = []
    if len(nodes) >= 2 and rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            a, b = (int(i) for i in rng.choice(len(nodes), size=2, replace=False))
            slow = int(rng.choice(GBPS[:3]))
            links.append({"between": [f"n{min(a, b)}", f"n{max(a, b)}"], "bandwidth": f"{slow}Gbps", "latency": "10us"})
    unique = {tuple(link["between"]): link for link in links}
    return {
        "model": str(rng.choice(ORACLE_MODELS)),
        "workload": {
            "prompt_tokens": int(rng.choice([256, 512, 1024, 2048])),
            "output_tokens": int(rng.choice([64, 128, 256, 512])),
        },
        "nodes": nodes,
        "network": {
            "default": {"bandwidth": f"{int(rng.choice(GBPS))}Gbps", "latency": "10us"},
            "links": [unique[k] for k in sorted(unique)],
        },
    }


def _node(name: str, gpu: str, count: int) -> dict:
    return {"name": name, "gpu": gpu, "count": count, "nic": "100Gbps"}


# The three failure shapes of issue 13 (what the search once missed), as small fixed clusters. The tests
# (tests/test_search_shapes.py) assert the scheduler reaches their exact optimum; benchmarks/ablation.py
# runs every method on them.
FAILURE_SHAPES: dict[str, dict] = {
    # a 1 Gbit/s link between the H200 node and the 3090 node: pipeline prefill 3090 (29 layers) + H200 (3)
    "slow-link": {
        "model": "llama-2-7b",
        "workload": {"prompt_tokens": 512, "output_tokens": 128},
        "nodes": [_node("h200", "H200-SXM", 1), _node("r3090", "RTX-3090", 2)],
        "network": {"default": {"bandwidth": "1Gbps", "latency": "10us"}},
    },
    # decode-bound on three L40s; the two 4090s together hold one more decode replica (TP 2)
    "idle-4090s": {
        "model": "llama-2-13b",
        "workload": {"prompt_tokens": 2048, "output_tokens": 512},
        "nodes": [_node("big", "L40", 3), _node("r4090", "RTX-4090", 2)],
        "network": {"default": {"bandwidth": "100Gbps", "latency": "10us"}},
    },
    # a three-L4 prefill pipeline must avoid the 100 Mbit/s link n0–n1: stage order n0, n2, n1
    "stage-order": {
        "model": "llama-2-13b",
        "workload": {"prompt_tokens": 1024, "output_tokens": 128},
        "nodes": [_node("n0", "L4", 1), _node("n1", "L4", 1), _node("n2", "L4", 1), _node("n3", "A100-80G", 1)],
        "network": {
            "default": {"bandwidth": "100Gbps", "latency": "10us"},
            "links": [{"between": ["n0", "n1"], "bandwidth": "100Mbps", "latency": "10us"}],
        },
    },
}


def large_cluster(
    rng: np.random.Generator, gpus: int, *, model: str = "llama-3.1-70b", types: int = 3, node_size: int = 8
) -> dict:
    """Nodes of `node_size` GPUs of `types` GPU types (in a seeded order), in two zones (two
    network tiers): fast inside a zone, slower across."""
    kinds = [str(k) for k in rng.permutation(LARGE_GPU_TYPES[:types])]
    count = max(1, gpus // node_size)
    nodes = [
        {
            "name": f"{kinds[i % len(kinds)].lower()}-{i}",
            "gpu": kinds[i % len(kinds)],
            "count": node_size,
            "nic": "400Gbps",
            "zone": "a" if i < count / 2 else "b",
        }
        for i in range(count)
    ]
    return {
        "model": model,
        "workload": {"prompt_tokens": 1024, "output_tokens": 256},
        "nodes": nodes,
        "network": {
            "default": {"bandwidth": "200Gbps", "latency": "5us"},
            "cross_zone": {"bandwidth": "50Gbps", "latency": "500us"},
        },
    }


def write_cluster(spec: dict, path: Path) -> Path:
    write_atomic(path, dump_yaml(spec))
    return path
