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
