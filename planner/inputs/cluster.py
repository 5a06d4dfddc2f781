"""The cluster.yaml schema (pydantic, strict) and its resolution into a `Cluster`.

Why strict: a typo in a key ("gpus:" for "gpu:") must fail loudly with the field path,
not be ignored. Every quantity is a unit string parsed by planner.units.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from planner.errors import InputError
from planner.inputs.catalog import (
    Bandwidth,
    Catalog,
    GpuEntry,
    ModelProfile,
    Price,
    Seconds,
    gpu_profile,
    model_from_hf_config,
)
from planner.inputs.problem import Cluster, Network, Node, NodeLink, Slo
from planner.inputs.workload import CLASSES, MAX_TOKENS, Lengths, Workload
from planner.types import Dtype, Objective, Strict
from planner.units import BANDWIDTH, json_pattern
from planner.yamlio import parse_yaml, read_text, validate

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
DEFAULT_LATENCY = "10us"


class InlineGpu(GpuEntry):
    """A GPU type described in the cluster file itself (not in the catalogue)."""


class NodeSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="unique node name; GPUs are named node/index")
    gpu: str | InlineGpu = Field(description="catalogue GPU type (see `hexplan profiles gpus`) or an inline spec")
    count: int = Field(gt=0, le=64, description="GPUs in this node")
    interconnect: str | None = Field(None, description="intra-node link (profiles/links.yaml); default: the GPU's")
    nic: Bandwidth = Field(description="the node's network bandwidth per direction, e.g. 400Gbps")
    price: Price | None = Field(None, description="$ per GPU-hour; overrides the catalogue price")
    zone: str = Field("default", description="network tier: pairs of nodes in different zones use network.cross_zone")


class LinkSpec(Strict):
    bandwidth: Bandwidth
    latency: Seconds = Field(DEFAULT_LATENCY, validate_default=True)  # a default is parsed like a value


class PairLinkSpec(LinkSpec):
    between: tuple[str, str]


def _shorthand_link(value: object) -> object:
    return {"bandwidth": value} if isinstance(value, str) else value


def _shorthand_schema(schema: dict) -> None:
    """`default: 100Gbps` is accepted as a bandwidth-only link; the JSON Schema must allow it too."""
    schema["anyOf"].insert(0, {"type": "string", "pattern": json_pattern(BANDWIDTH), "examples": ["100Gbps"]})


class NetworkSpec(Strict):
    default: LinkSpec | None = Field(
        None, description="node↔node link unless overridden; omit for none", json_schema_extra=_shorthand_schema
    )
    cross_zone: LinkSpec | None = Field(
        None, description="link between nodes of different zones", json_schema_extra=_shorthand_schema
    )
    links: list[PairLinkSpec] = Field(default=[])

    _default_shorthand = field_validator("default", "cross_zone", mode="before")(_shorthand_link)


class DistributionSpec(Strict):
    distribution: Literal["fixed", "uniform", "exponential", "lognormal"]
    mean: float | None = Field(None, gt=0, le=MAX_TOKENS)
    cv: float = Field(1.0, ge=0, le=10, description="coefficient of variation (lognormal)")
    low: float | None = Field(None, gt=0, le=MAX_TOKENS)
    high: float | None = Field(None, gt=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _parameters(self) -> Self:
        if self.distribution == "uniform":
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError("a uniform distribution needs low ≤ high")
        elif self.mean is None:
            raise ValueError(f"a {self.distribution} distribution needs a mean")
        return self

    def lengths(self) -> Lengths:
        if self.distribution == "uniform":
            assert self.low is not None and self.high is not None
            return Lengths("uniform", (self.low + self.high) / 2, low=self.low, high=self.high)
        assert self.mean is not None
        return Lengths(self.distribution, self.mean, cv=self.cv if self.distribution == "lognormal" else 0.0)


class SloSpec(Strict):
    ttft: Seconds | None = Field(None, description="time to first token (KV transfer included), e.g. 2s")
    tpot: Seconds | None = Field(None, description="time per output token, e.g. 100ms")
    attainment: float = Field(0.9, gt=0, le=1, description="share of requests that must meet both SLOs")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.ttft is None and self.tpot is None:
            raise ValueError("an SLO needs ttft, tpot or both (e.g. {ttft: 2s, tpot: 100ms})")
        return self


class WorkloadSpec(Strict):
    prompt_tokens: int | DistributionSpec | None = Field(None, description="mean prompt length or a distribution")
    output_tokens: int | DistributionSpec | None = Field(None, description="mean output length or a distribution")
    trace: str | None = Field(None, description="CSV (TIMESTAMP,ContextTokens,GeneratedTokens), relative to this file")
    trace_class: Literal["HPLD", "HPHD", "LPHD", "LPLD"] | None = Field(None, description="keep one class of the trace")
    slo: SloSpec | None = Field(None, description="service-level objectives: plans promise goodput under them")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        means = (self.prompt_tokens, self.output_tokens)
        if self.trace is not None and any(m is not None for m in means):
            raise ValueError("give either a trace or prompt_tokens/output_tokens, not both")
        if self.trace is None and any(m is None for m in means):
            raise ValueError("give prompt_tokens and output_tokens (or a trace)")
        if self.trace_class and self.trace is None:
            raise ValueError(f"trace_class selects requests of a trace; add a trace (classes: {', '.join(CLASSES)})")
        for value in means:
            if isinstance(value, int) and value <= 0:
                raise ValueError(f"token counts must be positive, got {value}")
            if isinstance(value, int) and value > MAX_TOKENS:
                raise ValueError(f"token counts must be at most {MAX_TOKENS:,} per request, got {value:,}")
        return self


class ServingSpec(Strict):
    """What to serve and how well: the part of a cluster file that is not hardware (OFFERS.yaml shares it)."""

    model: str = Field(description="a name in profiles/models.yaml or a path to a Hugging Face config.json")
    dtype: Dtype = "float16"
    workload: WorkloadSpec


class ClusterSpec(ServingSpec):
    """A cluster file: the GPUs you have, how they are connected, and what you want to serve."""

    objective: Objective | None = Field(None, description="default: goodput with workload.slo, else throughput")
    gpu_memory_utilization: float = Field(0.9, gt=0.1, le=0.98)
    nodes: list[NodeSpec] = Field(min_length=1)
    network: NetworkSpec = NetworkSpec()

    @field_validator("nodes")
    @classmethod
    def _unique_names(cls, nodes: list[NodeSpec]) -> list[NodeSpec]:
        duplicates = sorted(name for name, n in Counter(node.name for node in nodes).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate node names: {', '.join(duplicates)}; every node needs its own name")
        return nodes

    @model_validator(mode="after")
    def _link_ends(self) -> Self:
        names = {node.name for node in self.nodes}
        for i, link in enumerate(self.network.links):
            unknown = [end for end in link.between if end not in names]
            if unknown:
                raise ValueError(f"network.links[{i}].between names unknown node(s) {', '.join(unknown)}")
            if link.between[0] == link.between[1]:
                raise ValueError(f"network.links[{i}] links node {link.between[0]} to itself")
        return self


def _resolve_node(spec: NodeSpec, i: int, catalog: Catalog, path: Path) -> Node:
    where = f"{path}: nodes[{i}]"
    if isinstance(spec.gpu, InlineGpu):
        gpu = gpu_profile(spec.gpu.name, spec.gpu)
    else:
        try:
            gpu = catalog.gpu(spec.gpu)
        except LookupError as exc:
            raise InputError(f"{where}.gpu: {exc}.", hint="run `hexplan profiles gpus` for the list") from None
    link_name = spec.interconnect or gpu.intra_node_link
    try:
        link = catalog.link(link_name)
    except LookupError as exc:
        raise InputError(f"{where}.interconnect: {exc}.", hint="run `hexplan profiles links`") from None
    price = gpu.price_per_hour if spec.price is None else spec.price
    return Node(spec.name, gpu, spec.count, link, spec.nic, price, spec.zone)


def _network(spec: NetworkSpec) -> Network:
    """The network as rules plus overrides (never all pairs: see planner.topology)."""

    def link(entry: LinkSpec | None) -> NodeLink | None:
        return None if entry is None else NodeLink(entry.bandwidth, entry.latency)

    overrides = {tuple(sorted(entry.between)): NodeLink(entry.bandwidth, entry.latency) for entry in spec.links}
    return Network(link(spec.default), link(spec.cross_zone), overrides)  # type: ignore[arg-type]


def _resolve_model(name: str, path: Path, catalog: Catalog) -> ModelProfile:
    """A catalogue model, or a Hugging Face config.json relative to the cluster file (errors name both files)."""
    if name.endswith(".json"):
        try:
            return model_from_hf_config(path.parent / name)
        except InputError as exc:
            raise InputError(f"{path}: model: {exc.message}", hint=exc.hint) from None
    try:
        return catalog.model(name)
    except LookupError as exc:
        raise InputError(f"{path}: model: {exc}.", hint="or give a path to a config.json") from None


def load_cluster(path: Path, catalog: Catalog) -> Cluster:
    """Read and validate cluster.yaml, resolve catalogue names, and check the cluster is usable."""
    text = read_text(path, what="cluster file")  # read once: parsed, and hashed for the plan's cluster.sha256
    data = parse_yaml(text, path, what="cluster file")
    return cluster_from_data(data, path, hashlib.sha256(text.encode("utf-8")).hexdigest(), catalog)


def reject_top_level_slo(data: object, path: Path) -> None:
    """SLOs moved under `workload:`; say so instead of "extra field" (cluster files and offers files)."""
    if isinstance(data, dict) and "slo" in data:
        raise InputError(
            f"{path}: slo: SLOs are part of the workload now: move `slo:` under `workload:` "
            "(workload.slo: {ttft, tpot, attainment}, attainment defaulting to 0.9).",
            hint="e.g. workload: {prompt_tokens: 1024, output_tokens: 256, slo: {ttft: 2s, tpot: 100ms}}",
        )


def cluster_from_data(data: object, path: Path, sha256: str, catalog: Catalog) -> Cluster:
    """The Cluster of a parsed cluster file whose text hashes to `sha256`, as if read from `path`
    (relative paths inside resolve against its folder). `hexplan provision` builds clusters this way
    before it writes the one it chose, so the plan it writes is the one `solve` would make of that file."""
    reject_top_level_slo(data, path)
    spec = validate(ClusterSpec, data, path)
    nodes = [_resolve_node(node, i, catalog, path) for i, node in enumerate(spec.nodes)]
    model = _resolve_model(spec.model, path, catalog)
    if spec.workload.trace is not None:
        try:
            workload = Workload.from_trace(path.parent / spec.workload.trace, spec.workload.trace_class)
        except InputError as exc:  # name the cluster field that points at the trace, too
            raise InputError(f"{path}: workload.trace: {exc.message}", hint=exc.hint) from None
    else:
        prompt, output = (
            value.lengths() if isinstance(value, DistributionSpec) else Lengths("fixed", float(value))
            for value in (spec.workload.prompt_tokens, spec.workload.output_tokens)
        )
        workload = Workload(prompt, output)
    for node in nodes:
        if spec.dtype not in node.gpu.peak_flops:
            raise InputError(
                f"{path}: dtype: {node.gpu.key} (node {node.name}) has no {spec.dtype} support.",
                hint="use dtype: float16 or remove that node",
            )
    cluster = Cluster(
        source=path,
        sha256=sha256,
        model=model,
        dtype=spec.dtype,
        workload=workload,
        slo=Slo(slo.ttft, slo.tpot, slo.attainment) if (slo := spec.workload.slo) is not None else None,
        objective=spec.objective,
        memory_utilization=spec.gpu_memory_utilization,
        nodes=tuple(nodes),
        network=_network(spec.network),
    )
    isolated = cluster.unreachable_nodes()
    if isolated:
        raise InputError(
            f"{path}: network: node(s) {', '.join(isolated)} have no network path to the rest of the cluster.",
            hint="add network.default or a network.links entry for them",
        )
    return cluster
