"""The hardware and model catalogue: YAML files in profiles/ turned into frozen records.

Why one loader: every figure (FLOP/s, bandwidth, price) is written with a unit and a
source in data files; this module is the only place that parses them, so the rest of
the planner works with SI floats and never invents a number.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from planner.errors import InputError
from planner.inputs.calibrations import (
    AllreduceCalibration,
    Calibrations,
    GpuCalibration,
    gpu_calibration_for,
    link_calibration_for,
    load_calibrations,
)
from planner.types import Strict
from planner.units import (
    BANDWIDTH,
    BYTES,
    FLOPS,
    PRICE_PATTERN,
    TIME,
    json_pattern,
    parse_bandwidth,
    parse_bytes,
    parse_flops,
    parse_price,
    parse_time,
)
from planner.yamlio import is_directory, load_yaml, read_text, validate


def shipped_profiles_dir() -> Path:
    """The catalogue that came with hexgen2: the package data `hexgen2_profiles` (setup.cfg maps profiles/ to
    it, so a wheel carries it, calibrations/ included), else profiles/ of the source tree this module sits in."""
    try:
        found = resources.files("hexgen2_profiles")
    except ModuleNotFoundError:  # running from a source tree that was never installed
        found = None
    if isinstance(found, Path) and (found / "gpus.yaml").is_file():
        return found
    return Path(__file__).resolve().parents[2] / "profiles"


DEFAULT_PROFILES_DIR = shipped_profiles_dir()
DEFAULT_CALIBRATIONS_DIR = DEFAULT_PROFILES_DIR / "calibrations"
KvLayout = Literal["full", "sliding_window", "hybrid"]
HYBRID_MODEL_TYPES = ("gemma2", "gemma3", "gemma3_text", "cohere2")  # sliding and full layers alternate


def _unit_string(pattern: str, example: str) -> WithJsonSchema:
    """Files hold unit strings, not the floats they parse to: say so in `hexplan schema`."""
    return WithJsonSchema({"type": "string", "pattern": pattern, "examples": [example]})


Bytes = Annotated[float, BeforeValidator(parse_bytes), _unit_string(json_pattern(BYTES), "80GB")]
Bandwidth = Annotated[float, BeforeValidator(parse_bandwidth), _unit_string(json_pattern(BANDWIDTH), "100Gbps")]
Seconds = Annotated[float, BeforeValidator(parse_time), _unit_string(json_pattern(TIME), "10us")]
Flops = Annotated[float, BeforeValidator(parse_flops), _unit_string(json_pattern(FLOPS), "312TFLOPS")]
Price = Annotated[float, BeforeValidator(parse_price), _unit_string(PRICE_PATTERN, "$2.1/h")]

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "fp8": 1}


class EfficiencyEntry(Strict):
    compute: float = Field(gt=0, le=1)
    memory: float = Field(gt=0, le=1)


class GpuEntry(Strict):
    """One GPU type as written in gpus.yaml (or inline in a cluster file)."""

    name: str
    aliases: list[str] = Field(default=[])
    memory: Bytes
    memory_bandwidth: Bandwidth
    fp16: Flops
    bf16: Flops | None = None
    fp8: Flops | None = None
    intra_node_link: str = "pcie4"
    price: Price = "$0/h"
    price_source: str = ""
    efficiency: EfficiencyEntry = EfficiencyEntry(compute=0.55, memory=0.8)
    source: str = ""
    note: str = ""
    verified: bool = True


class LinkEntry(Strict):
    kind: Literal["intra_node", "network"]
    bandwidth: Bandwidth
    latency: Seconds
    source: str = ""
    note: str = ""
    verified: bool = True


class ModelEntry(Strict):
    hf_id: str = ""
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    ffn: int = Field(gt=0)
    vocab: int = Field(gt=0)
    gated_mlp: bool
    tie_embeddings: bool = False
    max_position_embeddings: int = Field(gt=0)
    kv_layout: KvLayout = Field("full", description="full attention everywhere, sliding-window, or a hybrid of both")
    activation: str = "silu"
    bias: bool = False  # biases are < 0.1% of parameters; recorded, not costed
    qkv_bias: bool = False
    params_b: float | None = None
    source: str = ""
    note: str = ""
    verified: bool = True


class CatalogFile(Strict):
    gpus: dict[str, GpuEntry] = Field(default={})
    links: dict[str, LinkEntry] = Field(default={})
    models: dict[str, ModelEntry] = Field(default={})


@dataclass(frozen=True)
class GpuProfile:
    """A GPU type in SI units. `flops(dtype)` is the dense tensor-core peak."""

    key: str
    name: str
    memory: float
    memory_bandwidth: float
    peak_flops: Mapping[str, float]
    intra_node_link: str
    price_per_hour: float
    compute_efficiency: float
    memory_efficiency: float
    calibration: GpuCalibration | None = None  # None: uncalibrated, the cost model's priors apply

    def flops(self, dtype: str) -> float:
        """Peak FLOP/s for dtype; GPUs without BF16 (T4, V100) run float16 figures only."""
        if dtype in self.peak_flops:
            return self.peak_flops[dtype]
        raise InputError(
            f"GPU {self.key} has no {dtype} peak in the catalogue (it has {', '.join(sorted(self.peak_flops))}).",
            hint="use `dtype: float16` or pick another GPU",
        )


@dataclass(frozen=True)
class LinkProfile:
    key: str
    kind: str
    bandwidth: float
    latency: float
    allreduce: AllreduceCalibration | None = None  # None: the ring formula with the link's figures


@dataclass(frozen=True)
class ModelProfile:
    """A dense decoder-only transformer's shape; derived sizes are per layer unless named otherwise."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool
    tie_embeddings: bool
    max_position_embeddings: int
    hf_id: str = ""
    kv_layout: KvLayout = "full"  # what KV connectors must move: vLLM 0.33's NIXL cannot with PP unless "full"

    @property
    def params_per_layer(self) -> int:
        attention = 2 * self.hidden * self.heads * self.head_dim + 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.ffn
        return attention + mlp

    @property
    def embedding_params(self) -> int:
        """Input embedding plus LM head (once if tied)."""
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def total_params(self) -> int:
        return self.layers * self.params_per_layer + self.embedding_params

    def kv_elements_per_token_layer(self) -> int:
        """K and V elements one token stores in one layer."""
        return 2 * self.kv_heads * self.head_dim


@dataclass(frozen=True)
class Catalog:
    gpus: Mapping[str, GpuProfile]
    links: Mapping[str, LinkProfile]
    models: Mapping[str, ModelProfile]
    aliases: Mapping[str, str] = field(default_factory=dict)
    calibrations: Calibrations = field(default_factory=Calibrations)

    def gpu(self, name: str) -> GpuProfile:
        key = self.aliases.get(name.lower(), name)
        if key in self.gpus:
            return self.gpus[key]
        raise LookupError(_unknown("GPU type", name, [*self.gpus, *self.aliases]))

    def link(self, name: str) -> LinkProfile:
        if name in self.links:
            return self.links[name]
        raise LookupError(_unknown("link", name, self.links))

    def model(self, name: str) -> ModelProfile:
        if name in self.models:
            return self.models[name]
        lowered = {key.lower(): key for key in self.models}
        if name.lower() in lowered:
            return self.models[lowered[name.lower()]]
        raise LookupError(_unknown("model", name, self.models))


def _unknown(what: str, name: str, known: Iterable[str]) -> str:
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4) or difflib.get_close_matches(
        name.lower(), [k.lower() for k in known], n=3, cutoff=0.4
    )
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"unknown {what} {name!r}; {hint}known: {', '.join(known)}"


def gpu_profile(key: str, entry: GpuEntry) -> GpuProfile:
    peaks = {"float16": entry.fp16, "bfloat16": entry.bf16, "fp8": entry.fp8}
    return GpuProfile(
        key=key,
        name=entry.name,
        memory=entry.memory,
        memory_bandwidth=entry.memory_bandwidth,
        peak_flops={dtype: value for dtype, value in peaks.items() if value is not None},
        intra_node_link=entry.intra_node_link,
        price_per_hour=entry.price,
        compute_efficiency=entry.efficiency.compute,
        memory_efficiency=entry.efficiency.memory,
    )


def model_profile(name: str, entry: ModelEntry) -> ModelProfile:
    return ModelProfile(
        name=name,
        **entry.model_dump(include={"layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab"}),
        gated_mlp=entry.gated_mlp,
        tie_embeddings=entry.tie_embeddings,
        max_position_embeddings=entry.max_position_embeddings,
        hf_id=entry.hf_id,
        kv_layout=entry.kv_layout,
    )


def load_catalog(extra_dirs: Iterable[Path] = (), calibration_files: Iterable[Path] = ()) -> Catalog:
    """Load profiles/*.yaml, then every *.yaml of each extra dir; later entries override earlier ones by key.

    Calibrations (planner.inputs.calibrations) come from profiles/calibrations/, each extra dir's
    calibrations/ and `calibration_files`, and are attached to the GPU and link records they describe.
    """
    extra_dirs = list(extra_dirs)
    gpus: dict[str, GpuProfile] = {}
    links: dict[str, LinkProfile] = {}
    models: dict[str, ModelProfile] = {}
    aliases: dict[str, str] = {}
    for directory in (DEFAULT_PROFILES_DIR, *extra_dirs):
        if not is_directory(directory):
            raise InputError(
                f"{directory}: profiles directory not found.", hint="pass an existing directory to --profiles"
            )
        for path in sorted(directory.glob("*.yaml")):
            entries = validate(CatalogFile, load_yaml(path, what="catalogue"), path)
            for key, gpu in entries.gpus.items():
                gpus[key] = gpu_profile(key, gpu)
                aliases.update({alias.lower(): key for alias in [key, *gpu.aliases]})
            links.update(
                {key: LinkProfile(key, link.kind, link.bandwidth, link.latency) for key, link in entries.links.items()}
            )
            models.update({key: model_profile(key, model) for key, model in entries.models.items()})
    for key, gpu in gpus.items():
        if gpu.intra_node_link not in links:
            raise InputError(f"catalogue: gpus.{key}.intra_node_link: {_unknown('link', gpu.intra_node_link, links)}")
    plain = Catalog(gpus=gpus, links=links, models=models, aliases=aliases)
    return with_calibrations(plain, extra_dirs, calibration_files)


def with_calibrations(catalog: Catalog, extra_dirs: Iterable[Path], files: Iterable[Path]) -> Catalog:
    """The catalogue with every GPU and link carrying its calibration (own, fallback or none)."""

    def resolve(kind: str, name: str) -> str:
        return catalog.gpu(name).key if kind == "gpu" else catalog.link(name).key

    found = load_calibrations(DEFAULT_CALIBRATIONS_DIR, extra_dirs, files, resolve)
    gpus = {key: replace(g, calibration=gpu_calibration_for(key, found)) for key, g in catalog.gpus.items()}
    links = {
        key: replace(
            link, allreduce=link_calibration_for(key, link.bandwidth, found, lambda k: catalog.links[k].bandwidth)
        )
        for key, link in catalog.links.items()
    }
    return replace(catalog, gpus=gpus, links=links, calibrations=found)


def model_from_hf_config(path: Path) -> ModelProfile:
    """Read a Hugging Face config.json of a dense decoder (Llama, Qwen2, Mistral, OPT families)."""
    try:
        config = json.loads(read_text(path, what="Hugging Face config.json"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
    except RecursionError:  # json's parser recurses per nesting level
        raise InputError(f"{path}: the JSON is nested too deeply to be a Hugging Face config.json.") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object (a Hugging Face config.json).")
    is_opt = config.get("model_type") == "opt"
    keys = {
        "layers": "num_hidden_layers",
        "hidden": "hidden_size",
        "heads": "num_attention_heads",
        "ffn": "ffn_dim" if is_opt else "intermediate_size",
        "vocab": "vocab_size",
        "max_position_embeddings": "max_position_embeddings",
    }
    values: dict[str, int] = {}
    for ours, theirs in keys.items():
        value = config.get(theirs)
        if not isinstance(value, int) or value <= 0:
            raise InputError(f"{path}: field {theirs}: expected a positive integer, got {value!r}.")
        values[ours] = value
    defaults = {"num_key_value_heads": values["heads"], "head_dim": values["hidden"] // values["heads"]}
    for theirs, default in defaults.items():
        value = config.get(theirs)
        if value is None:
            config[theirs] = default
        elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"{path}: field {theirs}: expected a positive integer, got {value!r}.")
    kv_heads, head_dim = config["num_key_value_heads"], config["head_dim"]
    if "num_local_experts" in config or "n_routed_experts" in config:
        raise InputError(
            f"{path}: mixture-of-experts configs are not supported yet; the cost model is for dense models."
        )
    return ModelProfile(
        name=str(config.get("_name_or_path") or path.parent.name),
        # vLLM loads the directory that holds config.json; absolute, so the plan says the same thing
        # whichever directory `hexplan solve` ran in (the cluster file names it relative to itself).
        hf_id=str(path.parent.resolve()),
        kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        gated_mlp=not is_opt,
        tie_embeddings=bool(config.get("tie_word_embeddings", is_opt)),
        kv_layout=kv_layout_of(config),
        **values,
    )


def kv_layout_of(config: dict) -> KvLayout:
    """The KV layout a Hugging Face config.json implies: per-layer `layer_types` that differ, or Gemma-2/3
    style alternation, are hybrid; a `sliding_window` in use on every layer is sliding-window."""
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and len(set(map(str, layer_types))) > 1:
        return "hybrid"
    if config.get("sliding_window") and config.get("use_sliding_window", True) is not False:
        return "hybrid" if config.get("model_type") in HYBRID_MODEL_TYPES else "sliding_window"
    return "full"
