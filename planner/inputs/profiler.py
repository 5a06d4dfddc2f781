"""`hexplan profile`: measure the local GPUs (or the CPU) with PyTorch into measurement records.

Why in inputs: a profile is measured input data, like the catalogue; the cost model only reads the
records (`hexplan calibrate`). torch is an optional extra (`pip install '.[profile]'`), imported lazily
inside `run`, so the planner installs and starts without it.

What is measured (each a `scope: layers` record = one layer's time × the model's layers, so the records
compare directly with planner.costs.predict; weights are initialised random tensors, never downloaded):
- GEMM sweep: one layer's four TP-sharded projections plus its norms, RoPE, activation and residual adds
  at tokens 1…8192 (phase prefill, batch 1, `excludes: [attention, allreduce]`);
- prefill: the same layer with causal attention (scaled_dot_product_attention), `excludes: [allreduce]`;
- decode: one step of `batch` sequences reading a KV cache of `context` tokens, `excludes: [allreduce]`;
- all-reduce: torch.distributed across `tp` local processes (NCCL on GPUs, gloo on the CPU), 8 B…256 MiB;
- whole-engine steps with `vllm bench latency --load-format dummy` when vLLM is installed (scope engine).
On a machine without a GPU the same code runs on CPU tensors with small shapes (`Sweep.cpu()`), labelled
`device: cpu`: that is what CI runs, so the harness is exercised end to end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from planner.errors import InputError
from planner.inputs.catalog import DTYPE_BYTES, ModelProfile
from planner.inputs.measurements import Measurement, read_vllm_bench

TORCH_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "fp8": "bfloat16"}


@dataclass(frozen=True)
class Sweep:
    """What to measure: shapes per model and TP, message sizes, repeats."""

    tokens: tuple[int, ...] = (1, 8, 32, 128, 512, 2048, 8192)
    prefill: tuple[tuple[int, int], ...] = ((1, 512), (1, 2048), (4, 2048), (1, 8192))  # (batch, tokens)
    decode: tuple[tuple[int, int], ...] = ((1, 1024), (8, 1024), (32, 2048), (64, 4096), (128, 2048), (256, 1024))
    allreduce_bytes: tuple[int, ...] = tuple(2**k for k in range(3, 29, 2))  # 8 B … 128 MiB
    repeats: int = 10
    warmup: int = 3

    @classmethod
    def cpu(cls) -> Sweep:
        """Small shapes for a CPU (CI): seconds, not hours."""
        return cls(
            tokens=(1, 8, 32),
            prefill=((1, 16), (2, 32)),
            decode=((1, 32), (4, 64)),
            allreduce_bytes=(8, 1024, 65536),
            repeats=3,
            warmup=1,
        )


@dataclass(frozen=True)
class Task:
    kind: str  # gemm | prefill | decode | allreduce | engine
    model: str | None
    tp: int
    tokens: int | None = None
    batch: int | None = None
    context: int | None = None


@dataclass(frozen=True)
class ProfileRequest:
    gpu: str
    models: dict[str, ModelProfile]
    tps: tuple[int, ...]
    device: str
    dtype: str
    interconnect: str
    sweep: Sweep = field(default_factory=Sweep)
    memory_bytes: float = math.inf  # one device's memory: shapes that do not fit are skipped
    vllm: bool = False


def plan_tasks(req: ProfileRequest) -> list[Task]:
    """Every measurement to take, in order (pure: tested without torch). TP sizes that do not divide a
    model's heads, KV heads and FFN are skipped, as are shapes whose weights + KV exceed the memory."""
    tasks: list[Task] = []
    b = DTYPE_BYTES[req.dtype]
    for name, model in req.models.items():
        for tp in req.tps:
            if model.heads % tp or model.kv_heads % tp or model.ffn % tp:
                continue
            layer_weights = model.params_per_layer * b / tp
            tasks += [Task("gemm", name, tp, tokens=m, batch=1) for m in req.sweep.tokens]
            tasks += [
                Task("prefill", name, tp, tokens=s, batch=n)
                for n, s in req.sweep.prefill
                if s <= model.max_position_embeddings
            ]
            kv_token = 2 * model.kv_heads * model.head_dim * b / tp
            tasks += [
                Task("decode", name, tp, batch=n, context=c)
                for n, c in req.sweep.decode
                if c <= model.max_position_embeddings and layer_weights + n * c * kv_token < 0.5 * req.memory_bytes
            ]
            if req.vllm:
                tasks.append(Task("engine", name, tp, tokens=1024, batch=8))
    tasks += [Task("allreduce", None, tp) for tp in req.tps if tp > 1]
    return tasks


# ----------------------------------------------------------------------------- torch (lazy)


def import_torch():
    try:
        import torch
    except ImportError:
        raise InputError(
            "hexplan profile needs PyTorch, which is not installed.",
            hint="pip install 'hexgen2[profile]' (or pip install torch)",
        ) from None
    return torch


def _timed(torch, fn: Callable[[], object], device: str, sweep: Sweep) -> float:
    """Median seconds of fn() over `repeats` runs after `warmup` (CUDA events on a GPU)."""
    for _ in range(sweep.warmup):
        fn()
    times = []
    for _ in range(sweep.repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


class _Layer:
    """One decoder layer's TP shard with random weights: projections, norms, RoPE, activation, attention."""

    def __init__(self, torch, model: ModelProfile, tp: int, dtype, device: str) -> None:
        self.t, self.m = torch, model
        d, h = model.head_dim, model.hidden
        self.q, self.kv, self.f = model.heads // tp, model.kv_heads // tp, model.ffn // tp
        mult = 2 if model.gated_mlp else 1
        make = lambda *shape: torch.randn(*shape, dtype=dtype, device=device) * 0.02  # noqa: E731
        self.w_qkv, self.w_o = make(h, (self.q + 2 * self.kv) * d), make(self.q * d, h)
        self.w_up, self.w_down = make(h, mult * self.f), make(self.f, h)
        self.norm = torch.ones(h, dtype=dtype, device=device)
        self.dtype, self.device = dtype, device

    def _rmsnorm(self, x):
        return x * self.t.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm

    def forward(self, x, attend: Callable | None):
        """x: [tokens, hidden]; attend(q, k, v) → [tokens, q·d] or None to skip attention."""
        t, d = self.t, self.m.head_dim
        qkv = self._rmsnorm(x) @ self.w_qkv
        q, k, v = qkv.split([self.q * d, self.kv * d, self.kv * d], dim=-1)
        q, k = q * 0.5 + q.roll(1, -1) * 0.5, k * 0.5 + k.roll(1, -1) * 0.5  # RoPE's elementwise cost
        out = attend(q, k, v) if attend is not None else q
        x = x + out @ self.w_o
        up = self._rmsnorm(x) @ self.w_up
        act = t.nn.functional.silu(up[..., : self.f]) * up[..., self.f :] if self.m.gated_mlp else t.relu(up)
        return x + act @ self.w_down

    def tokens(self, n: int):
        return self.t.randn(n, self.m.hidden, dtype=self.dtype, device=self.device)

    def prefill_attention(self, batch: int, seq: int) -> Callable:
        t, d = self.t, self.m.head_dim

        def attend(q, k, v):
            q = q.view(batch, seq, self.q, d).transpose(1, 2)
            k = k.view(batch, seq, self.kv, d).transpose(1, 2).repeat_interleave(self.q // self.kv, 1)
            v = v.view(batch, seq, self.kv, d).transpose(1, 2).repeat_interleave(self.q // self.kv, 1)
            o = t.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return o.transpose(1, 2).reshape(batch * seq, self.q * d)

        return attend

    def decode_attention(self, batch: int, context: int) -> Callable:
        t, d = self.t, self.m.head_dim
        cache_k = t.randn(batch, self.kv, context, d, dtype=self.dtype, device=self.device)
        cache_v = t.randn(batch, self.kv, context, d, dtype=self.dtype, device=self.device)
        group = self.q // self.kv

        def attend(q, k, v):
            q = q.view(batch, self.kv, group, d)  # GQA without copying the cache: heads grouped per KV head
            scores = t.einsum("bkgd,bkcd->bkgc", q, cache_k) / math.sqrt(d)
            o = t.einsum("bkgc,bkcd->bkgd", scores.softmax(-1), cache_v)
            return o.reshape(batch, self.q * d)

        return attend


def _record(req: ProfileRequest, task: Task, seconds: float, torch_version: str, **extra) -> Measurement:
    layers = req.models[task.model].layers if task.model else 1
    phase = {"gemm": "prefill", "prefill": "prefill", "decode": "decode"}[task.kind]
    excludes = ["attention", "allreduce"] if task.kind == "gemm" else ["allreduce"]
    return Measurement(
        gpu=req.gpu, model=task.model, tp=task.tp, phase=phase, scope="layers", tokens=task.tokens,
        batch=task.batch, context=task.context, dtype=req.dtype, measured_s=seconds * layers,
        source="hexplan profile", engine="torch", engine_version=torch_version, device=req.device,
        excludes=tuple(excludes), **extra,
    )  # fmt: skip


def _compute(torch, req: ProfileRequest, task: Task, layers: dict) -> Measurement:
    key = (task.model, task.tp)
    if key not in layers:
        layers.clear()  # one model × TP at a time on the device
        model = req.models[task.model]
        layers[key] = _Layer(torch, model, task.tp, getattr(torch, TORCH_DTYPES[req.dtype]), req.device)
    layer = layers[key]
    with torch.inference_mode():
        if task.kind == "gemm":
            x = layer.tokens(task.tokens)
            seconds = _timed(torch, lambda: layer.forward(x, None), req.device, req.sweep)
        elif task.kind == "prefill":
            x, attend = layer.tokens(task.batch * task.tokens), layer.prefill_attention(task.batch, task.tokens)
            seconds = _timed(torch, lambda: layer.forward(x, attend), req.device, req.sweep)
        else:
            x, attend = layer.tokens(task.batch), layer.decode_attention(task.batch, task.context)
            seconds = _timed(torch, lambda: layer.forward(x, attend), req.device, req.sweep)
    return _record(req, task, seconds, torch.__version__)


def _allreduce_worker(rank: int, tp: int, port: int, backend: str, sizes: list[int], repeats: int, out: str) -> None:
    """One rank of the all-reduce benchmark (spawned): median seconds per size, written by rank 0."""
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=tp)
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    result = {}
    for size in sizes:
        buf = torch.ones(max(size // 2, 1), dtype=torch.float16 if backend == "nccl" else torch.float32, device=device)
        times = []
        for i in range(repeats + 2):
            dist.barrier()
            began = time.perf_counter()
            dist.all_reduce(buf)
            if backend == "nccl":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - began)
        result[size] = statistics.median(times)
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _allreduce(torch, req: ProfileRequest, task: Task) -> list[Measurement]:
    import torch.multiprocessing as mp

    backend = "nccl" if req.device == "cuda" else "gloo"
    sizes = list(req.sweep.allreduce_bytes)
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "allreduce.json")
        args = (task.tp, _free_port(), backend, sizes, req.sweep.repeats, out)
        mp.spawn(_allreduce_worker, args=args, nprocs=task.tp, join=True)
        result = {int(k): v for k, v in json.loads(Path(out).read_text()).items()}
    return [
        Measurement(
            gpu=req.gpu,
            tp=task.tp,
            phase="allreduce",
            bytes=size,
            interconnect=req.interconnect,
            measured_s=result[size],
            source="hexplan profile",
            engine=backend,
            engine_version=torch.__version__,
            device=req.device,
        )
        for size in sizes
    ]


def _engine(req: ProfileRequest, task: Task, hf_id: str) -> list[Measurement]:
    """One prefill engine step through `vllm bench latency --load-format dummy` (no weights downloaded)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "latency.json"
        argv = ["vllm", "bench", "latency", "--model", hf_id, "--load-format", "dummy",
                "--tensor-parallel-size", str(task.tp), "--input-len", str(task.tokens), "--output-len", "1",
                "--batch-size", str(task.batch), "--num-iters", "5", "--output-json", str(out)]  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=1800)
        case = {"gpu": req.gpu, "model": task.model, "tp": task.tp, "phase": "prefill", "tokens": task.tokens,
                "batch": task.batch, "dtype": req.dtype, "device": req.device}  # fmt: skip
        return [read_vllm_bench(out, case, None)]


def run(req: ProfileRequest, progress: Callable[[Task], None] = lambda task: None) -> list[Measurement]:
    """Take every measurement of plan_tasks(req); `progress(task)` after each."""
    torch = import_torch()
    if req.device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "hexplan profile --device cuda: no CUDA device is visible to PyTorch.", hint="use --device cpu"
        )
    if req.device == "cuda" and max(req.tps) > torch.cuda.device_count():
        raise InputError(f"--tp {max(req.tps)}: only {torch.cuda.device_count()} GPU(s) are visible.")
    records: list[Measurement] = []
    layers: dict = {}
    for task in plan_tasks(req):
        if task.kind == "allreduce":
            records += _allreduce(torch, req, task)
        elif task.kind == "engine":
            if shutil.which("vllm") is not None:
                records += _engine(req, task, req.models[task.model].hf_id or task.model)
        else:
            records.append(_compute(torch, req, task, layers))
        progress(task)
    return records
