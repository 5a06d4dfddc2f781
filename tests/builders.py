"""Small fixture builders for unit tests: tiny clusters written as cluster.yaml text, replicas, draft plans.

Why YAML and not the `Cluster` record: the cluster file is the user's contract and stays stable while
the resolved record's fields move; building through `load_cluster` keeps these tests valid across
refactors. Every builder is a plain function (usable inside hypothesis strategies); clusters are cached
by their YAML text, so building the same one twice costs nothing.

    c = cluster(node("a", "A100-80G", 2), node("b", "L40", 2), network="100Gbps")
    p = replica(c, "prefill", ["a/0"])                  # one stage, every layer
    d = replica(c, "decode", ["b/0", "b/1"])             # TP = 2
    pipe = replica(c, "prefill", ["a/1"], ["b/0"], split=[10])   # PP = 2, layers [0, 10) and [10, L)
    plan = draft_plan(c, p, d)                           # the public API's `evaluate` of a draft plan
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import planner
from planner.costs.layout import Layout, Stage
from planner.inputs.catalog import Catalog
from planner.inputs.problem import Cluster
from planner.plans.schema import Plan
from planner.scheduler.assess import Assessment, assess

_FOLDER = Path(tempfile.mkdtemp(prefix="hexgen2-builders-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)


@functools.cache
def catalog() -> Catalog:
    return planner.load_catalog()


def hf_config(
    *, layers: int = 4, hidden: int = 768, heads: int = 12, kv_heads: int = 12, ffn: int = 2048, vocab: int = 1000
) -> str:
    """A toy Llama-shaped model as a Hugging Face config.json; returns its path (a cluster's `model`)."""
    config = {
        "model_type": "llama",
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": ffn,
        "vocab_size": vocab,
        "max_position_embeddings": 32768,
    }
    text = json.dumps(config, sort_keys=True)
    path = _FOLDER / f"config-{abs(hash(text)):x}.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


def toy_gpu(
    *, memory: str = "10GB", bandwidth: str = "100GB/s", fp16: str = "1000000TFLOPS", link: str = "pcie4"
) -> dict[str, Any]:
    """An inline GPU with efficiencies 1: by default memory-bound (compute effectively infinite), for analytic tests."""
    return {
        "name": "toy",
        "memory": memory,
        "memory_bandwidth": bandwidth,
        "fp16": fp16,
        "efficiency": {"compute": 1.0, "memory": 1.0},
        "intra_node_link": link,
    }


def gbps(value: float) -> float:
    """Gbit/s → bytes/s (what the planner works in)."""
    return value * 1e9 / 8


def node(
    name: str,
    gpu: str | dict[str, Any] = "A100-80G",
    count: int = 2,
    *,
    nic: float = 200,
    interconnect: str | None = None,
    price: float | None = None,
) -> dict[str, Any]:
    """One `nodes:` entry; `gpu` a catalogue name or an inline spec (`toy_gpu`), `nic` in Gbit/s, `price` in $ per
    GPU-hour."""
    entry: dict[str, Any] = {"name": name, "gpu": gpu, "count": count, "nic": f"{nic:g}Gbps"}
    if interconnect is not None:
        entry["interconnect"] = interconnect
    if price is not None:
        entry["price"] = f"${price:g}/h"
    return entry


def cluster(
    *nodes: dict[str, Any],
    model: str = "llama-3.1-8b",
    prompt: int = 1024,
    output: int = 256,
    ttft: str | None = None,
    tpot: str | None = None,
    network: float | None = 100,
    links: Sequence[tuple[str, str, float]] = (),
    latency: str = "10us",
    objective: str = "throughput",
    dtype: str = "float16",
) -> Cluster:
    """A resolved cluster of these `node(...)` entries: `network` (Gbit/s, None for no default link) between
    every pair, `links` (a, b, Gbit/s) overriding pairs, fixed prompt/output lengths, optional SLOs."""
    spec: dict[str, Any] = {
        "model": model,
        "dtype": dtype,
        "workload": {"prompt_tokens": prompt, "output_tokens": output},
        "objective": objective,
        "nodes": list(nodes),
        "network": {},
    }
    if ttft or tpot:
        spec["workload"]["slo"] = {k: v for k, v in (("ttft", ttft), ("tpot", tpot)) if v}
    if network is not None:
        spec["network"]["default"] = {"bandwidth": f"{network:g}Gbps", "latency": latency}
    if links:
        spec["network"]["links"] = [
            {"between": [a, b], "bandwidth": f"{bw:g}Gbps", "latency": latency} for a, b, bw in links
        ]
    return _load(yaml.safe_dump(spec, sort_keys=True))


@functools.cache
def _load(text: str) -> Cluster:
    path = _FOLDER / f"cluster-{abs(hash(text)):x}.yaml"
    path.write_text(text, encoding="utf-8")
    return planner.load_cluster(path, catalog())


def layout(layers: int, *stages: Sequence[str], split: Sequence[int] = ()) -> Layout:
    """Stages (TP groups of GPU ids, pipeline order) over `layers`, split evenly unless `split` gives the cuts."""
    bounds = [0, *(split or [layers * (i + 1) // len(stages) for i in range(len(stages) - 1)]), layers]
    return Layout(tuple(Stage(tuple(g), bounds[i], bounds[i + 1]) for i, g in enumerate(stages)))


def replica(c: Cluster, role: str, *stages: Sequence[str], split: Sequence[int] = ()) -> Assessment:
    """The cost model's assessment of this layout in this role; fails the test when it does not fit."""
    found = assess(c, role, layout(c.model.layers, *stages, split=split))  # type: ignore[arg-type]
    assert found is not None, f"{role} on {stages} does not fit"
    return found


def draft_plan(c: Cluster, *replicas: Assessment) -> Plan:
    """The plan of these replicas as `planner.evaluate` makes it of a hand-written draft (routes from the max-flow)."""
    draft = {
        "model": c.model.name,
        "replicas": [
            {
                "id": a.id,
                "role": a.role,
                "gpus": list(a.layout.gpus),
                "tp": a.layout.tp,
                "pp": a.layout.pp,
                "stages": [{"gpus": list(s.gpus), "layers": [s.layer_start, s.layer_end]} for s in a.layout.stages],
            }
            for a in replicas
        ],
    }
    path = _FOLDER / f"draft-{abs(hash(repr(draft))):x}.yaml"
    path.write_text(yaml.safe_dump(draft), encoding="utf-8")
    return planner.evaluate(path, c)
