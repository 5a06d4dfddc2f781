"""Convert public GPU measurements (NVIDIA AIConfigurator, Microsoft Vidur) into hexgen2 measurement JSONL.

Writes one file per (source, GPU type) under profiles/measurements/, each starting with a header record
``{"_meta": {...}}`` (repository, paths, commit, licence, engine, hardware, date, conversion notes) followed
by one measurement per line in the shared schema (issue 11)::

    gpu, model, tp, phase, scope, tokens, batch, context, bytes, interconnect, dtype, measured_s,
    source, engine, engine_version, device   [+ optional excludes, lower_bound, components]

``excludes`` names the cost-model terms a record did NOT measure (``elementwise``: norms, RoPE, activation,
residual adds; ``attention``; ``allreduce``: the TP all-reduce), so a fit predicts exactly what was measured.

Run (see scripts/README.md for the fetch step)::

    python scripts/import_public_measurements.py \\
        --aiconfigurator /work/.mirror/ai-dynamo+aiconfigurator/repo --vidur /work/.mirror/microsoft+vidur/repo

Upstream blobs are read with ``git show COMMIT:PATH`` from the given git directories (bare mirrors are
fine); nothing upstream is imported or executed. Needs pyyaml and, for AIConfigurator's tables (Parquet
since its commit f93be4a, 2026-05-29), pyarrow (imported lazily). Output is deterministic for fixed upstream
commits and ``--date``: records are sorted, keys written in schema order, floats rounded to 6 significant
digits.

Conversion and its assumptions
==============================
AIConfigurator (Apache-2.0), ``aic-core/src/aiconfigurator_core/systems/data/<system>/``:

* Per system the newest vLLM version that has ``gemm_perf``, ``context_attention_perf`` and
  ``generation_attention_perf`` with ``status: complete`` in its ``collection_meta.yaml`` (``reuse.yaml``
  aliases are skipped). Latencies are milliseconds (collector ``latency_ms``); we write seconds.
* scope=layers records are composed from kernels, for each catalogue model (profiles/models.yaml) and
  TP in {1, 2, 4, 8} with heads, kv_heads and ffn divisible by TP and weights + KV ≤ 90 % of GPU memory.
  Per layer, with d = head_dim, h = heads/TP, g = kv_heads/TP, M = tokens in the step (prefill
  batch·tokens, decode batch)::

      t_layer = G(M, (h+2g)·d, hidden) + G(M, hidden, h·d)              # QKV, O projections
              + G(M, (2 if gated else 1)·ffn/TP, hidden) + G(M, hidden, ffn/TP)   # up(+gate), down
              + A                                                       # attention
      measured_s = layers · t_layer

  G = bf16 GEMM table (``gemm_dtype == bfloat16``), A = context attention (prefill: batch, isl=tokens)
  or generation attention (decode: batch, KV length = ``step`` + 1 = context) with head_dim 128,
  ``window_size`` 0 and bf16 KV cache. G is multilinear in (m, n, k) between grid points and A linear in
  num_heads at fixed kv heads — both only strictly inside the measured grid; shapes outside are skipped.
  Not included (no upstream table): norms, RoPE, activation, residual adds, LM head, TP all-reduce — so
  these points sit below a real engine's layer time by the per-layer elementwise cost (9–15 %, issue 11).
  They carry ``excludes: [elementwise, allreduce]``; ``components`` gives the gemm / attention split.
* phase=allreduce records: ``comm/nccl/<newest>/nccl_perf`` (nccl-tests ``all_reduce_perf``,
  out-of-place time; ``message_size`` is an ELEMENT count, bytes = 2·size for ``half``) and vLLM's custom
  all-reduce under CUDA graphs (``custom_allreduce_perf``, ``backend == vllm_graph``; size also in bf16
  elements). Eager-mode custom all-reduce rows and int8 NCCL rows are not written.

Vidur (MIT), ``data/profiling/``:

* ``compute/<gpu>/<hf model>/mlp.csv``: per-operator CUDA kernel times (ms, column ``.median``) of one
  decoder layer, fp16, TP simulated by sharding shapes on one GPU. One layer = attn_pre_proj (QKV) +
  attn_post_proj (O) + mlp_up_proj + mlp_down_proj (``components.gemm``) + input_layernorm + attn_rope +
  post_attention_layernorm + mlp_act + add (``components.other``; the first residual add is not timed
  upstream) — times ``layers``. Repeated rows of one (num_tokens, TP) are combined by their median.
  HF models map to catalogue keys only when every layer shape matches (Meta-Llama-3-8B/70B share
  llama-3.1-8b/70b's layer shapes). The matching ``attention.csv`` files (10+ MB each) are not in the
  mirror this was built from, so these records EXCLUDE the attention kernel: each is written as
  phase=prefill, batch=1, tokens=num_tokens with ``excludes: [attention, allreduce]`` (exact for what it
  measured, so not a lower bound for that reason).
* ``network/<node>/all_reduce.csv``: NCCL kernel time (ms, median over launches, rank 0) per ``size``
  (already bytes upstream: the profiler writes 2·fp16 elements). Single-node rows only
  (num_workers == devices_per_node); sizes subsampled to one per half-octave.

Physical floor (the "known trap"): for every record the roofline minimum
``max(Σ bytes / peak DRAM bandwidth, Σ FLOPs / peak dense fp16/bf16)`` is computed from
profiles/gpus.yaml (non-catalogue GPUs: the upstream system YAML, or a datasheet figure named in
``_meta``), with bytes = weights + activations in/out + KV read/written and causal prefill FLOPs.
All-reduce floor: (n−1)/n · bytes / per-direction link bandwidth (valid even with in-switch reduction).
A record is marked ``lower_bound: true`` when it is below that floor, or when any kernel it was
composed from is below that kernel's own floor (e.g. weights L2-resident between timed repeats).

Exits 2 with a one-line message when an input is missing (git dir, catalogue file, upstream table, a blob
absent from the snapshot or a Git LFS pointer instead of data).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import math
import re
import statistics
import subprocess
import sys
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from any interpreter that has pyyaml (+ pyarrow)
    sys.path.insert(0, str(ROOT))

from planner.units import parse_bandwidth, parse_bytes, parse_flops  # noqa: E402

AIC_URL = "https://github.com/ai-dynamo/aiconfigurator"
VIDUR_URL = "https://github.com/microsoft/vidur"
AIC_SYSTEMS = "aic-core/src/aiconfigurator_core/systems"
AIC_COPYRIGHT = "Copyright (c) 2025-2026 NVIDIA CORPORATION & AFFILIATES. All rights reserved."
VIDUR_COPYRIGHT = "Copyright (c) Microsoft Corporation."
LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
MS = 1e-3
FIT_FRACTION = 0.9  # weights + KV must fit in this share of GPU memory for a composed point
TPS = (1, 2, 4, 8)

# Sweeps (subsampled on purpose: regimes, not every grid point). Every value is an upstream grid value.
PREFILL_POINTS = ((1, 128), (1, 512), (1, 2048), (1, 8192), (1, 16384), (4, 512), (4, 2048), (16, 128), (16, 1024))
DECODE_BATCHES = (1, 8, 32, 128, 512)
DECODE_CONTEXTS = (128, 1024, 4096, 16384, 65536)
VIDUR_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
# Mistral-7B v0.1 attends over a 4096-token sliding window (profiles/models.yaml note); the upstream
# attention tables are full-attention, so longer sequences would misstate its kernels.
SLIDING_WINDOW = {"mistral-7b": 4096}

# AIConfigurator system → (our GPU key, interconnect key, why). Keys not in profiles/gpus.yaml or
# links.yaml are upstream-derived and left for the lead to adopt or drop.
AIC_SYSTEM_MAP = {
    "a100_sxm": ("A100-80G", "nvlink3", "A100 SXM4 80GB, NVSwitch (AIC intra_node_bw 300 GB/s)"),
    "h100_sxm": ("H100-SXM", "nvlink4", "H100 SXM5 80GB, NVSwitch (AIC intra_node_bw 450 GB/s)"),
    "h200_sxm": ("H200-SXM", "nvlink4", "H200 SXM 141GB, NVSwitch (AIC intra_node_bw 450 GB/s)"),
    "l40s": ("L40S", "pcie4", "L40S 48GB, 8 per node on PCIe 4.0 (AIC intra_node_bw 32 GB/s)"),
    "b200_sxm": ("B200", "nvlink5", "B200 SXM, NVLink 5 (AIC intra_node_bw 900 GB/s); not in our catalogue"),
    "b300_sxm": ("B300", "nvlink5", "B300 SXM, NVLink 5 (AIC intra_node_bw 900 GB/s); not in our catalogue"),
    "gb200": ("GB200", "nvlink5", "GB200 NVL72 tray, NVLink 5 (AIC intra_node_bw 900 GB/s); not in our catalogue"),
    "gb300": ("GB300", "nvlink5", "GB300 NVL72 tray, NVLink 5 (AIC intra_node_bw 900 GB/s); not in our catalogue"),
    "rtx_pro_6000_server": (
        "RTX-PRO-6000",
        "pcie5",
        "RTX PRO 6000 Blackwell Server Edition, 8 per node on PCIe Gen5 x16 (AIC intra_node_bw 64 GB/s); "
        "not in our catalogue",
    ),
}

# Vidur compute folder → (our GPU key, hardware description).
VIDUR_GPU_MAP = {
    "a100": ("A100-80G", "A100 80GB (Vidur: compute profiles shared by its a100_dgx and a100_pairwise_nvlink nodes)"),
    "h100": ("H100-SXM", "H100 80GB (Vidur: used for its h100_dgx node; form factor not stated, DGX implies SXM)"),
    "a40": ("A40", "A40 48GB (Vidur: 8xA40 pairwise-NVLink node); not in our catalogue"),
}
# Vidur network folder → (our GPU key, {tp: interconnect}, description).
VIDUR_NETWORK_MAP = {
    "a100_dgx": ("A100-80G", {2: "nvlink3", 4: "nvlink3", 8: "nvlink3"}, "A100 DGX, 8 GPUs on NVSwitch"),
    "h100_dgx": ("H100-SXM", {2: "nvlink4", 4: "nvlink4", 8: "nvlink4"}, "H100 DGX, 8 GPUs on NVSwitch"),
    "a100_pairwise_nvlink": (
        "A100-80G",
        {2: "nvlink-bridge-a100", 4: "pcie4"},
        "Azure Standard_NC96ads_A100_v4 (Vidur docs/profiling.md): 4x A100 80GB PCIe, NVLink bridge per pair; "
        "TP2 stays on one bridge, TP4 crosses PCIe 4.0",
    ),
    "h100_pairwise_nvlink": (
        "H100-PCIe",
        {2: "nvlink-bridge-h100", 4: "pcie5"},
        "4x H100 with NVLink bridges in pairs (Vidur names only 'h100_pairwise_nvlink'); bridges imply a PCIe "
        "form factor (H100 PCIe or H100 NVL: not stated upstream), mapped to H100-PCIe; TP4 crosses PCIe Gen5",
    ),
}
# Vidur HF model → catalogue key, only where every layer shape is identical.
VIDUR_MODEL_MAP = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "meta-llama/Meta-Llama-3-8B": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3-70B": "llama-3.1-70b",
}
VIDUR_LAYER_GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
VIDUR_LAYER_OTHER = ("input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")
# Datasheet peaks for GPUs in neither our catalogue nor an upstream system file.
EXTRA_PEAKS = {
    "A40": dict(
        bandwidth=696e9,
        flops=149.7e12,
        memory=48e9,
        source="NVIDIA A40 datasheet: 696 GB/s GDDR6, 48 GB, FP16 Tensor 149.7 TFLOPS dense "
        "(Vidur's own A40 config says fp16_tflops 150)",
    ),
}

SCHEMA_KEYS = (
    "gpu", "model", "tp", "phase", "scope", "tokens", "batch", "context", "bytes", "interconnect", "dtype",
    "measured_s", "source", "engine", "engine_version", "device",
)  # fmt: skip


class InputError(Exception):
    """An expected failure (missing input, unreadable blob): main prints one line and exits 2."""


def die(message: str) -> InputError:
    return InputError(message)


def sig(x: float, digits: int = 6) -> float:
    """Round to `digits` significant digits so the JSON text is stable across platforms."""
    return float(f"{x:.{digits}g}")


def version_key(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"\d+|[a-z]+", text))


# ---------------------------------------------------------------------------------------------- git
class GitTree:
    """Read-only view of one commit of a (bare) git directory."""

    def __init__(self, gitdir: str, rev: str = "HEAD") -> None:
        if not Path(gitdir).is_dir():
            raise die(f"{gitdir} is not a directory; pass the git dir that `fetch` printed")
        self.gitdir = gitdir
        self.commit = self._git("rev-parse", f"{rev}^{{commit}}").decode().strip()
        self.date = self._git("show", "-s", "--format=%cs", self.commit).decode().strip()

    def _git(self, *args: str) -> bytes:
        proc = subprocess.run(["git", f"--git-dir={self.gitdir}", *args], capture_output=True)
        if proc.returncode:
            raise die(f"git {' '.join(args)} in {self.gitdir}: {proc.stderr.decode().strip()}")
        return proc.stdout

    def ls(self, prefix: str) -> list[str]:
        return self._git("ls-tree", "-r", "--name-only", self.commit, "--", prefix).decode().split("\n")[:-1]

    def read(self, path: str) -> bytes:
        """The blob's bytes; raises when it is absent (large blobs are left out of snapshots) or an LFS pointer."""
        proc = subprocess.run(["git", f"--git-dir={self.gitdir}", "show", f"{self.commit}:{path}"], capture_output=True)
        if proc.returncode:
            raise die(f"{path} at {self.commit[:12]} cannot be read ({proc.stderr.decode().strip()})")
        if proc.stdout.startswith(LFS_MAGIC):
            raise die(f"{path} at {self.commit[:12]} is a Git LFS pointer, not data")
        return proc.stdout

    def readable(self, path: str) -> bool:
        try:
            self.read(path)
        except InputError:
            return False
        return True


def read_parquet(tree: GitTree, path: str) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # expected on the project venv: say how to get it
        raise die("AIConfigurator tables are Parquet: install pyarrow (pip install pyarrow) and rerun") from exc
    return pq.read_table(io.BytesIO(tree.read(path))).to_pylist()


# ------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class Model:
    key: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    gated: bool
    params: float  # parameters (count)
    max_positions: int


@dataclass(frozen=True)
class Peak:
    bandwidth: float  # bytes/s, DRAM
    flops: float  # FLOP/s, dense fp16/bf16
    memory: float  # bytes
    source: str


def load_catalogue(profiles: Path) -> tuple[dict[str, Model], dict[str, Peak], dict[str, float]]:
    def load(name: str) -> dict:
        path = profiles / name
        if not path.is_file():
            raise die(f"{path} not found; pass --profiles pointing at the catalogue folder")
        return yaml.safe_load(path.read_text())

    models = {
        key: Model(
            key=key,
            layers=m["layers"],
            hidden=m["hidden"],
            heads=m["heads"],
            kv_heads=m["kv_heads"],
            head_dim=m["head_dim"],
            ffn=m["ffn"],
            gated=bool(m["gated_mlp"]),
            params=float(m["params_b"]) * 1e9,
            max_positions=m["max_position_embeddings"],
        )
        for key, m in load("models.yaml")["models"].items()
    }
    peaks = {
        key: Peak(
            bandwidth=parse_bandwidth(g["memory_bandwidth"]),
            flops=parse_flops(g.get("bf16", g["fp16"])),
            memory=parse_bytes(g["memory"]),
            source=f"profiles/gpus.yaml {key}: {g['memory_bandwidth']}, {g.get('bf16', g['fp16'])} dense, "
            f"{g['memory']}",
        )
        for key, g in load("gpus.yaml")["gpus"].items()
    }
    links = {key: parse_bandwidth(link["bandwidth"]) for key, link in load("links.yaml")["links"].items()}
    return models, peaks, links


# --------------------------------------------------------------------------------- physics floor
def gemm_cost(m: int, n: int, k: int, elt: int = 2) -> tuple[float, float]:
    """(bytes, FLOPs) of C[m,n] = A[m,k]·W[k,n]: read A and W once, write C once."""
    return elt * (m * k + k * n + m * n), 2.0 * m * n * k


def prefill_attention_cost(b: int, s: int, h: int, g: int, d: int, elt: int = 2) -> tuple[float, float]:
    """Causal self-attention over s new tokens: read Q, K, V, write O (and K, V into the cache)."""
    return elt * b * s * d * (2 * h + 4 * g), 2.0 * b * h * d * s * (s + 1)


def decode_attention_cost(b: int, c: int, h: int, g: int, d: int, elt: int = 2) -> tuple[float, float]:
    """One new token per sequence attending over c cached tokens: read K, V (c each), Q, write O."""
    return elt * b * (2 * c * g * d + 2 * h * d), 4.0 * b * h * d * c


def floor_s(cost: tuple[float, float], peak: Peak) -> float:
    return max(cost[0] / peak.bandwidth, cost[1] / peak.flops)


# ------------------------------------------------------------------------------ interpolation
def bracket(grid: list[int], x: float) -> list[tuple[int, float]] | None:
    """Grid points and weights for linear interpolation at x; None outside the grid (no extrapolation)."""
    i = bisect_left(grid, x)
    if i < len(grid) and grid[i] == x:
        return [(grid[i], 1.0)]
    if i == 0 or i == len(grid):
        return None
    lo, hi = grid[i - 1], grid[i]
    w = (x - lo) / (hi - lo)
    return [(lo, 1.0 - w), (hi, w)]


@dataclass
class GemmTable:
    """bf16 GEMM latency (s) on an (m, n, k) grid; multilinear inside the grid."""

    times: dict[tuple[int, int, int], float]
    grids: tuple[list[int], list[int], list[int]] = field(init=False)
    interpolated: int = 0
    exact: int = 0

    def __post_init__(self) -> None:
        self.grids = tuple(sorted({key[i] for key in self.times}) for i in range(3))  # type: ignore[assignment]

    def __call__(self, m: int, n: int, k: int) -> float | None:
        parts = [bracket(grid, x) for grid, x in zip(self.grids, (m, n, k))]
        if any(p is None for p in parts):
            return None
        total = 0.0
        for mi, wm in parts[0]:
            for ni, wn in parts[1]:
                for ki, wk in parts[2]:
                    t = self.times.get((mi, ni, ki))
                    if t is None:
                        return None
                    total += wm * wn * wk * t
        if all(len(p) == 1 for p in parts):
            self.exact += 1
        else:
            self.interpolated += 1
        return total


@dataclass
class AttentionTable:
    """Attention latency (s) keyed (batch, seq, heads, kv_heads); linear in heads at fixed kv heads."""

    times: dict[tuple[int, int, int, int], float]
    interpolated: int = 0
    exact: int = 0

    def __call__(self, b: int, s: int, h: int, g: int) -> float | None:
        if (t := self.times.get((b, s, h, g))) is not None:
            self.exact += 1
            return t
        heads = sorted(hh for (bb, ss, hh, gg) in self.times if (bb, ss, gg) == (b, s, g))
        parts = bracket(heads, h)
        if parts is None:
            return None
        self.interpolated += 1
        return sum(w * self.times[(b, s, hh, g)] for hh, w in parts)


def median_by_key(rows: list[dict], key, value) -> dict:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[key(r)].append(value(r))
    return {k: statistics.median(v) for k, v in groups.items()}


# ------------------------------------------------------------------------------------- records
def record(**fields) -> dict:
    out = {k: fields.pop(k, None) for k in SCHEMA_KEYS}
    out["measured_s"] = sig(out["measured_s"])
    if excludes := fields.pop("excludes", None):
        out["excludes"] = list(excludes)
    if fields.pop("lower_bound", False):
        out["lower_bound"] = True
    if (components := fields.pop("components", None)) is not None:
        out["components"] = {k: sig(v) for k, v in components.items()}
    if fields:
        raise ValueError(f"unknown record fields {sorted(fields)}")
    return out


PHASE_ORDER = {"prefill": 0, "decode": 1, "allreduce": 2}


def sort_key(r: dict) -> tuple:
    return (
        PHASE_ORDER[r["phase"]], r["source"], r["scope"] or "", r["model"] or "", r["tp"], r["batch"] or 0,
        r["tokens"] or 0, r["context"] or 0, r["interconnect"] or "", r["bytes"] or 0,
    )  # fmt: skip


@dataclass
class Shard:
    """One model's per-GPU layer shapes at tensor parallelism tp."""

    model: Model
    tp: int

    @property
    def h(self) -> int:
        return self.model.heads // self.tp

    @property
    def g(self) -> int:
        return self.model.kv_heads // self.tp

    def valid(self) -> bool:
        m = self.model
        return m.heads % self.tp == 0 and m.kv_heads % self.tp == 0 and m.ffn % self.tp == 0

    def gemms(self, tokens: int) -> list[tuple[str, int, int, int]]:
        m, d = self.model, self.model.head_dim
        up = (2 if m.gated else 1) * m.ffn // self.tp
        return [
            ("qkv", tokens, (self.h + 2 * self.g) * d, m.hidden),
            ("o", tokens, m.hidden, self.h * d),
            ("up", tokens, up, m.hidden),
            ("down", tokens, m.hidden, m.ffn // self.tp),
        ]

    def fits(self, kv_tokens: int, peak: Peak) -> bool:
        m = self.model
        kv_bytes = 2 * m.layers * self.g * m.head_dim * 2 * kv_tokens
        return m.params * 2 / self.tp + kv_bytes <= FIT_FRACTION * peak.memory

    def max_seq(self) -> int:
        return min(self.model.max_positions, SLIDING_WINDOW.get(self.model.key, self.model.max_positions))


@dataclass
class Composite:
    """A scope=layers time composed from per-kernel lookups, with its physics checks."""

    gemm_s: float = 0.0
    attention_s: float = 0.0
    other_s: float = 0.0
    bytes: float = 0.0
    flops: float = 0.0
    kinds_below_floor: set[str] = field(default_factory=set)

    def add(self, kind: str, t: float, cost: tuple[float, float], peak: Peak, name: str | None = None) -> None:
        if t < floor_s(cost, peak):
            self.kinds_below_floor.add(name or kind)
        setattr(self, f"{kind}_s", getattr(self, f"{kind}_s") + t)
        self.bytes += cost[0]
        self.flops += cost[1]

    def finish(self, layers: int, peak: Peak) -> tuple[float, dict, bool, bool]:
        total = layers * (self.gemm_s + self.attention_s + self.other_s)
        floor = layers * max(self.bytes / peak.bandwidth, self.flops / peak.flops)
        parts = {"gemm": layers * self.gemm_s, "attention": layers * self.attention_s, "other": layers * self.other_s}
        components = {k: v for k, v in parts.items() if v > 0}
        return total, components, total < floor, bool(self.kinds_below_floor)


@dataclass
class Tally:
    """Counts for _meta and the summary."""

    below_record_floor: int = 0
    below_kernel_floor: int = 0
    kernel_kinds_below_floor: Counter = field(default_factory=Counter)
    missing_attention: int = 0
    skipped: Counter = field(default_factory=Counter)
    allreduce_unchecked: int = 0


# --------------------------------------------------------------------------------- AIConfigurator
AIC_NOTES = [
    "Latencies upstream are milliseconds; measured_s = latency / 1000.",
    "phase=prefill/decode, scope=layers: sum over all layers of the four TP-sharded GEMMs (QKV N=(h+2g)d "
    "K=hidden; O N=hidden K=hd; up(+gate) N=(2 if gated else 1)ffn/tp K=hidden; down N=hidden K=ffn/tp) from "
    "the bf16 gemm table plus one attention kernel (context attention: batch, isl=tokens; generation attention: "
    "batch, KV length step+1 = context), head_dim 128, full attention, bf16 KV cache. M = batch*tokens "
    "(prefill) or batch (decode).",
    "Not in these layer times (no upstream table): RMSNorm/LayerNorm, RoPE, activation, residual adds, biases, "
    "LM head, embedding, TP all-reduce. OPT models (ReLU, biases, LayerNorm) are approximated by the same GEMMs.",
    "Interpolation only strictly inside the measured grid (GEMM multilinear in m, n, k; attention linear in "
    "num_heads at fixed kv heads); points outside are skipped, never extrapolated.",
    f"Points kept only when TP divides heads, kv_heads and ffn and weights (2 bytes/param / TP) + KV cache fit in "
    f"{FIT_FRACTION:.0%} of GPU memory; mistral-7b sequences capped at its 4096-token sliding window.",
    "dtype is bfloat16 for every composed point (the kernels measured), also for Llama-2 whose checkpoints are fp16.",
    "phase=allreduce: nccl_perf all_reduce 'half' rows (nccl-tests out-of-place time, dtype float16) and "
    "custom_allreduce_perf backend=vllm_graph rows (dtype bfloat16); message_size is an element count upstream, "
    "bytes = 2 * message_size.",
    "Known trap: the bf16 GEMM collector leaves weights uninitialised and cycles only 6 weight copies, so small "
    "weights stay L2-resident; lower_bound marks points below the DRAM/FLOP floor (record or any kernel).",
]


def aic_table_status(tree: GitTree, folder: str) -> dict[str, str]:
    path = f"{folder}/collection_meta.yaml"
    if path not in set(tree.ls(folder)):
        return {}
    meta = yaml.safe_load(tree.read(path))
    return {name: t.get("status", "") for name, t in (meta.get("tables") or {}).items()}


def aic_newest(tree: GitTree, system: str, kind: str, framework: str, tables: tuple[str, ...]) -> str | None:
    """Newest version folder of data/<system>/<kind>/<framework>/ whose tables are all collected and complete."""
    base = f"{AIC_SYSTEMS}/data/{system}/{kind}/{framework}"
    files = set(tree.ls(base))
    versions = sorted({p[len(base) + 1 :].split("/")[0] for p in files}, key=version_key, reverse=True)
    for v in versions:
        folder = f"{base}/{v}"
        status = aic_table_status(tree, folder)
        if all(f"{folder}/{t}.parquet" in files and status.get(t) == "complete" for t in tables):
            return v
    return None


def pick_kernel(rows: list[dict], notes: list[str], what: str) -> list[dict]:
    """Keep the rows of the most common kernel_source, so one table describes one kernel."""
    sources = Counter(r["kernel_source"] for r in rows)
    if not sources:
        return rows
    chosen = sources.most_common(1)[0][0]
    if len(sources) > 1:
        notes.append(f"{what}: kernel_source {chosen!r} used ({sources[chosen]} rows); others skipped: {dict(sources)}")
    return [r for r in rows if r["kernel_source"] == chosen]


@dataclass
class AicFile:
    """What one AIConfigurator system contributes to its output file."""

    system: str
    gpu: str
    interconnect: str
    peak: Peak
    link_bw: float
    link_source: str
    records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)
    versions: dict[str, str] = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    tally: Tally = field(default_factory=Tally)


def aic_setup(tree: GitTree, system: str, peaks: dict[str, Peak], links: dict[str, float]) -> AicFile:
    """GPU peaks and link bandwidth for the floors: the catalogue when it has the key, else the system YAML."""
    gpu, interconnect, _ = AIC_SYSTEM_MAP[system]
    sys_path = f"{AIC_SYSTEMS}/{system}.yaml"
    spec = yaml.safe_load(tree.read(sys_path))
    if gpu in peaks:
        peak = peaks[gpu]
    else:
        g = spec["gpu"]
        peak = Peak(
            bandwidth=float(g["mem_bw"]),
            flops=float(g["bfloat16_tc_flops"]),
            memory=float(g["mem_capacity"]),
            source=f"{sys_path}: mem_bw {g['mem_bw']:.4g} B/s, bfloat16_tc_flops {g['bfloat16_tc_flops']:.4g}, "
            f"mem_capacity {g['mem_capacity']:.4g} B",
        )
    if interconnect in links:
        link_bw, link_source = links[interconnect], f"profiles/links.yaml {interconnect}"
    else:
        link_bw = float(spec["node"]["intra_node_bw"])
        link_source = f"{sys_path} node.intra_node_bw (no profiles/links.yaml key {interconnect!r})"
    return AicFile(system, gpu, interconnect, peak, link_bw, link_source, paths=[sys_path])


def aic_layers(tree: GitTree, out: AicFile, models: dict[str, Model]) -> None:
    """scope=layers records composed from the newest complete vLLM GEMM + attention tables."""
    version = aic_newest(tree, out.system, "gemm", "vllm", ("gemm_perf",))
    attn_version = aic_newest(
        tree, out.system, "attention", "vllm", ("context_attention_perf", "generation_attention_perf")
    )
    if not version or version != attn_version:
        out.notes.append(f"no complete vLLM gemm + attention tables at one version ({version}, {attn_version})")
        return
    data = f"{AIC_SYSTEMS}/data/{out.system}"
    gpath = f"{data}/gemm/vllm/{version}/gemm_perf.parquet"
    cpath = f"{data}/attention/vllm/{version}/context_attention_perf.parquet"
    dpath = f"{data}/attention/vllm/{version}/generation_attention_perf.parquet"
    out.paths += [gpath, cpath, dpath]
    out.versions["vllm"] = version

    grows = pick_kernel(
        [r for r in read_parquet(tree, gpath) if r["gemm_dtype"] == "bfloat16"], out.notes, "gemm bfloat16"
    )
    crows = pick_kernel(_attention_rows(read_parquet(tree, cpath)), out.notes, "context attention")
    drows = pick_kernel(_attention_rows(read_parquet(tree, dpath)), out.notes, "generation attention")
    out.devices |= {r["device"] for r in grows + crows + drows}

    def ms(r: dict) -> float:
        return r["latency"] * MS

    gemm = GemmTable(median_by_key(grows, lambda r: (r["m"], r["n"], r["k"]), ms))
    ctx = AttentionTable(
        median_by_key(crows, lambda r: (r["batch_size"], r["isl"], r["num_heads"], r["num_key_value_heads"]), ms)
    )
    # vLLM's seq_len for a generation step is step + 1 (history plus the new token): the KV length read.
    gen = AttentionTable(
        median_by_key(
            drows, lambda r: (r["batch_size"], r["isl"] + r["step"], r["num_heads"], r["num_key_value_heads"]), ms
        )
    )
    out.tables.update(
        gemm=gpath,
        context_attention=cpath,
        generation_attention=dpath,
        kernels={
            "gemm": sorted({r["kernel_source"] for r in grows}),
            "context_attention": sorted({r["kernel_source"] for r in crows}),
            "generation_attention": sorted({r["kernel_source"] for r in drows}),
        },
    )
    common = dict(
        gpu=out.gpu,
        scope="layers",
        dtype="bfloat16",
        source=f"aiconfigurator:{out.system}/vllm/{version}",
        engine="vllm",
        engine_version=version,
        device="cuda",
    )
    for model in sorted(models.values(), key=lambda m: m.key):
        for tp in TPS:
            shard = Shard(model, tp)
            if not shard.valid():
                out.tally.skipped["TP does not divide heads/kv_heads/ffn"] += 1
                continue
            for batch, tokens in PREFILL_POINTS:
                if tokens > shard.max_seq() or not shard.fits(batch * tokens, out.peak):
                    out.tally.skipped["prefill point exceeds memory or max positions"] += 1
                    continue
                attention = (
                    ctx(batch, tokens, shard.h, shard.g),
                    prefill_attention_cost(batch, tokens, shard.h, shard.g, model.head_dim),
                )
                rec = _compose(gemm, shard, batch * tokens, attention, out, common, phase="prefill", tokens=tokens,
                               batch=batch)  # fmt: skip
                if rec is None:
                    out.tally.skipped["prefill shape outside the upstream grid"] += 1
                else:
                    out.records.append(rec)
            for batch in DECODE_BATCHES:
                for context in DECODE_CONTEXTS:
                    if context > shard.max_seq() or not shard.fits(batch * context, out.peak):
                        out.tally.skipped["decode point exceeds memory or max positions"] += 1
                        continue
                    attention = (
                        gen(batch, context, shard.h, shard.g),
                        decode_attention_cost(batch, context, shard.h, shard.g, model.head_dim),
                    )
                    rec = _compose(gemm, shard, batch, attention, out, common, phase="decode", batch=batch,
                                   context=context)  # fmt: skip
                    if rec is None:
                        out.tally.skipped["decode shape outside the upstream grid"] += 1
                    else:
                        out.records.append(rec)
    out.notes.append(
        f"GEMM lookups: {gemm.exact} on grid points, {gemm.interpolated} multilinear inside the grid; "
        f"context attention: {ctx.exact} exact, {ctx.interpolated} interpolated in num_heads; "
        f"generation attention: {gen.exact} exact, {gen.interpolated} interpolated in num_heads"
    )


def _attention_rows(rows: list[dict]) -> list[dict]:
    """Dense full-attention rows matching our catalogue: head_dim 128, bf16 activations and KV cache."""
    return [
        r
        for r in rows
        if r["head_dim"] == 128
        and r.get("window_size", 0) == 0
        and r["kv_cache_dtype"] == "bfloat16"
        and r.get("attn_dtype", "bfloat16") == "bfloat16"
        and r.get("beam_width", 1) == 1
    ]


def _compose(gemm: GemmTable, shard: Shard, m_tokens: int, attention: tuple[float | None, tuple[float, float]],
             out: AicFile, common: dict, **fields) -> dict | None:  # fmt: skip
    """One layer's GEMMs at M = m_tokens plus the attention kernel, times layers; None when off the grid."""
    comp = Composite()
    for name, m, n, k in shard.gemms(m_tokens):
        if (t := gemm(m, n, k)) is None:
            return None
        comp.add("gemm", t, gemm_cost(m, n, k), out.peak, f"gemm_{name}")
    t_attn, cost = attention
    if t_attn is None:
        return None
    comp.add("attention", t_attn, cost, out.peak)
    fields = dict(common, model=shard.model.key, tp=shard.tp, **fields)
    return _finish(comp, shard, out.peak, out.tally, fields, excludes=AIC_LAYER_EXCLUDES)


def aic_allreduce(tree: GitTree, out: AicFile) -> None:
    """NCCL (nccl-tests, half) and vLLM custom all-reduce (CUDA graph) rows; message_size counts elements."""
    data = f"{AIC_SYSTEMS}/data/{out.system}"
    if nccl := aic_newest(tree, out.system, "comm", "nccl", ("nccl_perf",)):
        path = f"{data}/comm/nccl/{nccl}/nccl_perf.parquet"
        rows = [r for r in read_parquet(tree, path) if r["op_name"] == "all_reduce" and r["nccl_dtype"] == "half"]
        _aic_allreduce_rows(out, rows, source=f"aiconfigurator:{out.system}/nccl/{nccl}", dtype="float16",
                            engine="nccl", engine_version=nccl)  # fmt: skip
        out.paths.append(path)
        out.versions["nccl"] = nccl
        out.tables["nccl_all_reduce"] = path
    if car := aic_newest(tree, out.system, "comm", "vllm", ("custom_allreduce_perf",)):
        path = f"{data}/comm/vllm/{car}/custom_allreduce_perf.parquet"
        rows = [
            r for r in read_parquet(tree, path) if r.get("backend") == "vllm_graph" and r["op_name"] == "all_reduce"
        ]
        if {r["allreduce_dtype"] for r in rows} - {"bfloat16"}:
            raise die(f"{path}: allreduce_dtype other than bfloat16; the byte count would be wrong")
        _aic_allreduce_rows(out, rows, source=f"aiconfigurator:{out.system}/vllm-custom-allreduce/{car}",
                            dtype="bfloat16", engine="vllm", engine_version=car)  # fmt: skip
        out.paths.append(path)
        out.versions["vllm_custom_allreduce"] = car
        out.tables["vllm_custom_allreduce"] = path


def _aic_allreduce_rows(out: AicFile, rows: list[dict], **fields) -> None:
    out.devices |= {r["device"] for r in rows}
    times = median_by_key(rows, lambda r: (r["num_gpus"], 2 * r["message_size"]), lambda r: r["latency"] * MS)
    for (n, size), t in times.items():
        out.records.append(_allreduce(out.gpu, n, size, out.interconnect, t, out.link_bw, out.tally, **fields))


def convert_aic(tree: GitTree, system: str, models: dict[str, Model], peaks: dict[str, Peak],
                links: dict[str, float], date: str) -> tuple[str, dict, list[dict], Tally] | None:  # fmt: skip
    out = aic_setup(tree, system, peaks, links)
    aic_layers(tree, out, models)
    aic_allreduce(tree, out)
    if not out.records:
        return None
    meta = {
        "source": "NVIDIA AIConfigurator collected kernel database",
        "repository": AIC_URL,
        "commit": tree.commit,
        "commit_date": tree.date,
        "paths": sorted(out.paths),
        "licence": "Apache-2.0",
        "copyright": AIC_COPYRIGHT,
        "modifications": "converted by hexgen2 scripts/import_public_measurements.py: units changed (ms -> s, "
        "elements -> bytes), kernel times summed into per-model layer times, subsampled; see conversion_notes",
        "upstream_system": system,
        "engine_versions": out.versions,
        "hardware": {
            "device": sorted(out.devices),
            "description": AIC_SYSTEM_MAP[system][2],
            "interconnect": out.interconnect,
        },
        "tables_used": out.tables,
        "roofline": {"gpu": out.peak.source, "link": f"{out.link_source}: {out.link_bw / 1e9:g} GB/s per direction"},
        "converted": date,
        "converter": "scripts/import_public_measurements.py",
        "conversion_notes": AIC_NOTES + out.notes,
    }
    return _file_name("aiconfigurator", out.gpu), meta, out.records, out.tally


AIC_LAYER_EXCLUDES = ("elementwise", "allreduce")  # kernels with no upstream table
VIDUR_LAYER_EXCLUDES = ("attention", "allreduce")  # attention.csv unreadable; TP simulated on one GPU


def _finish(comp: Composite, shard: Shard, peak: Peak, tally: Tally, fields: dict, **extra) -> dict:
    total, components, below_record, below_kernel = comp.finish(shard.model.layers, peak)
    tally.below_record_floor += below_record
    tally.below_kernel_floor += below_kernel
    tally.kernel_kinds_below_floor.update(comp.kinds_below_floor)
    lower = below_record or below_kernel or extra.pop("lower_bound", False)
    return record(**fields, measured_s=total, components=components, lower_bound=lower,
                  excludes=extra.pop("excludes", None))  # fmt: skip


def _allreduce(gpu: str, n: int, size: int, interconnect: str, t: float, link_bw: float | None, tally: Tally,
               **fields) -> dict:  # fmt: skip
    """One all-reduce record; floor (n-1)/n * bytes / link bandwidth (each GPU must at least send that)."""
    below = False
    if link_bw is None:
        tally.allreduce_unchecked += 1
    elif t < (n - 1) / n * size / link_bw:
        below = True
        tally.below_record_floor += 1
    return record(gpu=gpu, tp=n, phase="allreduce", bytes=size, interconnect=interconnect, measured_s=t,
                  device="cuda", lower_bound=below, **fields)  # fmt: skip


def _file_name(source: str, gpu: str) -> str:
    return f"{source}-{gpu.lower()}.jsonl"


# --------------------------------------------------------------------------------------- Vidur
VIDUR_NOTES = [
    "Upstream times are milliseconds (CUDA kernel time from the PyTorch profiler); measured_s = ms / 1000.",
    "Compute (data/profiling/compute/<gpu>/<model>/mlp.csv): one layer = sum of the .median columns of "
    + ", ".join(VIDUR_LAYER_GEMMS + VIDUR_LAYER_OTHER)
    + "; times the catalogue model's layers. Rows repeated for one (num_tokens, TP) are combined by the median.",
    "TP is simulated upstream by sharding shapes on one GPU: no communication in these times.",
    "attention.csv (the attention kernel) is absent from the snapshot read (blobs of 4 MiB and more are left "
    "out; upstream they are 10+ MB): every compute point EXCLUDES attention and is written as phase=prefill, "
    "batch=1, tokens=num_tokens with excludes: [attention, allreduce] (exact for what it measured). "
    "components.gemm = the four projections, "
    "components.other = norms + RoPE + activation + residual add.",
    "Model mapping only where every layer shape matches: Llama-2-7b-hf -> llama-2-7b, Llama-2-70b-hf -> "
    "llama-2-70b, Meta-Llama-3-8B -> llama-3.1-8b, Meta-Llama-3-70B -> llama-3.1-70b (Llama 3 and 3.1 share "
    "hidden, heads, kv_heads, ffn, layers). CodeLlama-34b, internlm-20b, Qwen-72B (Qwen 1), phi-2 are not in "
    "the catalogue and are skipped.",
    "dtype float16 (the profiler casts the model to torch.float16).",
    "All-reduce (data/profiling/network/<node>/all_reduce.csv): column time_stats.all_reduce.median (median "
    "NCCL kernel time over launches, rank 0); size is bytes upstream (2 x fp16 elements). Only single-node rows "
    "(num_workers == devices_per_node); sizes subsampled to the upstream size nearest each half-octave "
    "(within 25 %).",
]


def convert_vidur(tree: GitTree, models: dict[str, Model], peaks: dict[str, Peak], links: dict[str, float],
                  date: str) -> list[tuple[str, dict, list[dict], Tally]]:  # fmt: skip
    by_gpu: dict[str, dict] = defaultdict(lambda: {"records": [], "paths": [], "tally": Tally(), "hardware": [],
                                                   "unreadable": [], "roofline": {}})  # fmt: skip
    compute = "data/profiling/compute"
    files = tree.ls(compute)
    for path in files:
        if not path.endswith("/mlp.csv"):
            continue
        gpu_dir, hf = path[len(compute) + 1 :].split("/", 1)
        hf = hf[: -len("/mlp.csv")]
        if gpu_dir not in VIDUR_GPU_MAP:
            continue
        gpu, hardware = VIDUR_GPU_MAP[gpu_dir]
        slot = by_gpu[gpu]
        if hardware not in slot["hardware"]:
            slot["hardware"].append(hardware)
        attn = path[: -len("mlp.csv")] + "attention.csv"
        if attn in files and not tree.readable(attn):
            slot["unreadable"].append(attn)
        if hf not in VIDUR_MODEL_MAP:
            slot["tally"].skipped[f"model not in catalogue: {hf}"] += 1
            continue
        model = models[VIDUR_MODEL_MAP[hf]]
        peak = peaks.get(gpu) or Peak(**EXTRA_PEAKS[gpu])
        slot["roofline"]["gpu"] = peak.source
        slot["paths"].append(path)
        rows = list(csv.DictReader(io.StringIO(tree.read(path).decode())))
        _check_vidur_shape(rows, model, path)
        cols = VIDUR_LAYER_GEMMS + VIDUR_LAYER_OTHER
        grouped: dict = defaultdict(list)
        for r in rows:
            grouped[(int(r["num_tokens"]), int(r["num_tensor_parallel_workers"]))].append(r)
        for (tokens, tp), group in sorted(grouped.items()):
            shard = Shard(model, tp)
            if tokens not in VIDUR_TOKENS or not shard.valid():
                continue
            if not shard.fits(tokens, peak):
                slot["tally"].skipped["model does not fit at this TP"] += 1
                continue
            op = {c: statistics.median(float(r[f"time_stats.{c}.median"]) for r in group) * MS for c in cols}
            comp = Composite()
            for (_, m, n, k), col in zip(shard.gemms(tokens), VIDUR_LAYER_GEMMS, strict=True):
                comp.add("gemm", op[col], gemm_cost(m, n, k), peak, col)
            comp.other_s = sum(op[c] for c in VIDUR_LAYER_OTHER)
            slot["tally"].missing_attention += 1
            fields = dict(gpu=gpu, model=model.key, tp=tp, phase="prefill", scope="layers", tokens=tokens, batch=1,
                          dtype="float16", source=f"vidur:{gpu_dir}/{model.key}", engine="sarathi-serve",
                          engine_version=None, device="cuda")  # fmt: skip
            slot["records"].append(_finish(comp, shard, peak, slot["tally"], fields, excludes=VIDUR_LAYER_EXCLUDES))

    network = "data/profiling/network"
    for path in tree.ls(network):
        if not path.endswith("/all_reduce.csv"):
            continue
        node = path[len(network) + 1 :].split("/")[0]
        if node not in VIDUR_NETWORK_MAP:
            continue
        gpu, ics, hardware = VIDUR_NETWORK_MAP[node]
        slot = by_gpu[gpu]
        slot["paths"].append(path)
        slot["hardware"].append(f"{node}: {hardware}")
        rows = [
            r
            for r in csv.DictReader(io.StringIO(tree.read(path).decode()))
            if r["collective"] == "all_reduce" and r["num_workers"] == r["devices_per_node"]
        ]
        times = median_by_key(
            rows,
            lambda r: (int(r["num_workers"]), int(r["size"])),
            lambda r: float(r["time_stats.all_reduce.median"]) * MS,
        )
        for n in sorted({n for n, _ in times}):
            sizes = sorted(s for nn, s in times if nn == n)
            for size in _half_octaves(sizes):
                ic = ics[n]
                bw = links.get(ic)
                slot["roofline"].setdefault("links", {})[ic] = (
                    f"profiles/links.yaml {ic}: {bw / 1e9:g} GB/s per direction"
                    if bw
                    else "no catalogue bandwidth: floor not checked"
                )
                slot["records"].append(_allreduce(gpu, n, size, ic, times[(n, size)], bw, slot["tally"],
                                                  source=f"vidur:{node}/all_reduce", dtype="float16", engine="nccl",
                                                  engine_version=None))  # fmt: skip
    out = []
    for gpu, slot in sorted(by_gpu.items()):
        if not slot["records"]:
            continue
        notes = list(VIDUR_NOTES)
        if slot["unreadable"]:
            notes.append("Unreadable in this snapshot (not used): " + ", ".join(sorted(slot["unreadable"])))
        meta = {
            "source": "Microsoft Vidur profiling data",
            "repository": VIDUR_URL,
            "commit": tree.commit,
            "commit_date": tree.date,
            "paths": sorted(slot["paths"]),
            "licence": "MIT",
            "copyright": VIDUR_COPYRIGHT,
            "modifications": "converted by hexgen2 scripts/import_public_measurements.py: unit change (ms -> s), "
            "operator times summed into per-model layer times, subsampled; see conversion_notes",
            "engine_versions": {
                k: v
                for k, v in (("sarathi-serve", "vidur branch, version not stated upstream"), ("nccl", "not stated"))
                if any(r["engine"] == k for r in slot["records"])
            },
            "hardware": {"description": slot["hardware"]},
            "roofline": slot["roofline"],
            "converted": date,
            "converter": "scripts/import_public_measurements.py",
            "conversion_notes": notes,
        }
        out.append((_file_name("vidur", gpu), meta, slot["records"], slot["tally"]))
    return out


def _check_vidur_shape(rows: list[dict], model: Model, path: str) -> None:
    """Refuse a model mapping whose layer shapes differ from the catalogue (they must match exactly)."""
    want = {"n_head": model.heads, "n_kv_head": model.kv_heads, "n_embd": model.hidden, "n_expanded_embd": model.ffn}
    for col, value in want.items():
        got = {int(r[col]) for r in rows}
        if got != {value}:
            raise die(f"{path}: {col} is {sorted(got)}, catalogue {model.key} says {value}")


def _half_octaves(sizes: list[int]) -> list[int]:
    """The upstream size nearest each 2^(i/2) (within 25 %), each kept once."""
    chosen = []
    lo, hi = math.log2(sizes[0]), math.log2(sizes[-1])
    for i in range(math.floor(2 * lo), math.ceil(2 * hi) + 1):
        target = 2 ** (i / 2)
        best = min(sizes, key=lambda s: abs(math.log(s / target)))
        if abs(best / target - 1) <= 0.25 and best not in chosen:
            chosen.append(best)
    return chosen


# --------------------------------------------------------------------------------------- output
def write(out_dir: Path, name: str, meta: dict, records: list[dict], tally: Tally) -> Path:
    records = sorted(records, key=sort_key)
    meta = dict(meta)
    meta["counts"] = summarise(records, tally)
    path = out_dir / name
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"_meta": meta}, ensure_ascii=False, separators=(",", ":")) + "\n")
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    return path


def summarise(records: list[dict], tally: Tally) -> dict:
    by = Counter(f"{r['phase']}/{r['scope'] or '-'}" for r in records)
    pre = [r for r in records if r["phase"] == "prefill"]
    dec = [r for r in records if r["phase"] == "decode"]
    ar = [r for r in records if r["phase"] == "allreduce"]

    def span(rs: list[dict], key: str) -> list | None:
        vals = [r[key] for r in rs if r[key] is not None]
        return [min(vals), max(vals)] if vals else None

    return {
        "records": len(records),
        "by_phase_scope": dict(sorted(by.items())),
        "models": sorted({r["model"] for r in records if r["model"]}),
        "prefill_tokens": span(pre, "tokens"),
        "prefill_batch": span(pre, "batch"),
        "decode_batch": span(dec, "batch"),
        "decode_context": span(dec, "context"),
        "tp": span([r for r in records if r["phase"] != "allreduce"], "tp"),
        "allreduce_bytes": span(ar, "bytes"),
        "allreduce_tp": span(ar, "tp"),
        "interconnects": sorted({r["interconnect"] for r in ar}),
        "lower_bound": sum(1 for r in records if r.get("lower_bound")),
        "lower_bound_below_record_floor": tally.below_record_floor,
        "lower_bound_kernel_below_floor": tally.below_kernel_floor,
        "records_by_kernel_below_floor": dict(sorted(tally.kernel_kinds_below_floor.items())),
        "excludes_attention": tally.missing_attention,
        "allreduce_floor_unchecked": tally.allreduce_unchecked,
        "skipped": dict(sorted(tally.skipped.items())),
    }


def print_summary(written: list[tuple[Path, dict]]) -> None:
    head = ("file", "KiB", "gpu", "records", "phase/scope", "prefill tokens", "decode batch", "decode context",
            "allreduce bytes", "AR tp", "interconnects", "lower_bound (floor/kernel), excludes attention")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for path, meta in written:
        c = meta["counts"]

        def rng(v):
            return "-" if v is None else f"{v[0]}–{v[1]}"

        row = (
            path.name, f"{path.stat().st_size / 1024:.0f}", meta["_gpu"], str(c["records"]),
            ", ".join(f"{k} {v}" for k, v in c["by_phase_scope"].items()), rng(c["prefill_tokens"]),
            rng(c["decode_batch"]), rng(c["decode_context"]), rng(c["allreduce_bytes"]), rng(c["allreduce_tp"]),
            ", ".join(c["interconnects"]) or "-",
            f"{c['lower_bound']} ({c['lower_bound_below_record_floor']}/{c['lower_bound_kernel_below_floor']}/"
            f"{c['excludes_attention']} no-attn)",
        )  # fmt: skip
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> None:
    try:
        run(argv)
    except InputError as exc:
        print(f"import_public_measurements: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aiconfigurator", metavar="GITDIR", help="git dir of github.com/ai-dynamo/aiconfigurator")
    ap.add_argument("--vidur", metavar="GITDIR", help="git dir of github.com/microsoft/vidur")
    ap.add_argument("--aiconfigurator-rev", default="HEAD", help="commit to read (default HEAD)")
    ap.add_argument("--vidur-rev", default="HEAD", help="commit to read (default HEAD)")
    ap.add_argument("--out", type=Path, default=ROOT / "profiles" / "measurements")
    ap.add_argument(
        "--profiles", type=Path, default=ROOT / "profiles", help="catalogue folder (gpus/models/links.yaml)"
    )
    ap.add_argument("--date", default=datetime.date.today().isoformat(), help="conversion date written to _meta")
    ap.add_argument("--systems", default=",".join(AIC_SYSTEM_MAP), help="AIConfigurator systems to convert")
    args = ap.parse_args(argv)
    if not args.aiconfigurator and not args.vidur:
        raise die("nothing to do: pass --aiconfigurator GITDIR and/or --vidur GITDIR")
    models, peaks, links = load_catalogue(args.profiles)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = []
    if args.aiconfigurator:
        tree = GitTree(args.aiconfigurator, args.aiconfigurator_rev)
        for system in args.systems.split(","):
            if system not in AIC_SYSTEM_MAP:
                raise die(f"unknown system {system!r}; known: {', '.join(AIC_SYSTEM_MAP)}")
            if (res := convert_aic(tree, system, models, peaks, links, args.date)) is not None:
                outputs.append((AIC_SYSTEM_MAP[system][0], res))
    if args.vidur:
        tree = GitTree(args.vidur, args.vidur_rev)
        for res in convert_vidur(tree, models, peaks, links, args.date):
            outputs.append((res[2][0]["gpu"], res))
    written = []
    for gpu, (name, meta, records, tally) in outputs:
        path = write(args.out, name, meta, records, tally)
        with path.open(encoding="utf-8") as fh:
            written.append((path, dict(json.loads(fh.readline())["_meta"], _gpu=gpu)))
    print_summary(written)


if __name__ == "__main__":
    main()
