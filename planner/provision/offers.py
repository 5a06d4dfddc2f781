"""OFFERS.yaml: what can be rented (GPU type, node shape, price, how many) and what to serve.

Why the cluster spec's pieces: `model`, `dtype`, `workload` (with its `slo`) and `network` mean exactly what they
mean in cluster.yaml (planner.inputs.cluster.ServingSpec and NetworkSpec), and provision writes them into
the cluster file it chooses as they were written here, so one schema and one set of checks serve both.
An offer rents whole nodes: `max_gpus` is a multiple of `gpus_per_node`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator

from planner.errors import InputError
from planner.inputs.catalog import Bandwidth, Catalog, GpuProfile, Price
from planner.inputs.cluster import NAME_PATTERN, NetworkSpec, ServingSpec, cluster_from_data, reject_top_level_slo
from planner.types import Strict
from planner.yamlio import load_yaml, validate

MAX_NODES_PER_OFFER = 64
MAX_OFFERS = 32


class OfferSpec(Strict):
    gpu: str = Field(description="catalogue GPU type or alias (`hexplan profiles gpus`)")
    price: Price = Field(description="$ per GPU-hour of this offer, e.g. $3.69/h")
    max_gpus: int = Field(gt=0, description="most GPUs of this offer to rent; a multiple of gpus_per_node")
    gpus_per_node: int = Field(gt=0, le=64, description="GPUs in each rented node")
    interconnect: str | None = Field(None, description="intra-node link (profiles/links.yaml); default: the GPU's")
    nic: Bandwidth | None = Field(None, description="each node's network bandwidth; default: network.default's")
    zone: str = Field("default", pattern=NAME_PATTERN, description="network tier, as a node's zone in cluster.yaml")

    @model_validator(mode="after")
    def _whole_nodes(self) -> Self:
        if self.max_gpus % self.gpus_per_node:
            raise ValueError(
                f"max_gpus {self.max_gpus} is not a multiple of gpus_per_node {self.gpus_per_node}: "
                "an offer rents whole nodes"
            )
        if self.max_gpus // self.gpus_per_node > MAX_NODES_PER_OFFER:
            raise ValueError(
                f"max_gpus {self.max_gpus} is {self.max_gpus // self.gpus_per_node} nodes of "
                f"{self.gpus_per_node}; at most {MAX_NODES_PER_OFFER} nodes per offer"
            )
        return self


class OffersSpec(ServingSpec):
    """An offers file: the serving problem of a cluster file, with offers instead of nodes."""

    offers: list[OfferSpec] = Field(min_length=1, max_length=MAX_OFFERS)
    network: NetworkSpec = Field(description="the link between any two rented nodes (network.default)")

    @field_validator("network")
    @classmethod
    def _network(cls, network: NetworkSpec) -> NetworkSpec:
        if network.default is None:
            raise ValueError("network.default is required: the link between any two rented nodes")
        if network.links:
            raise ValueError("links name nodes, and rented nodes have no names yet; use network.default")
        return network


@dataclass(frozen=True)
class Offer:
    """One resolved offer; `node` holds the cluster.yaml fields of one of its nodes, as the user wrote them."""

    index: int
    gpu: GpuProfile
    gpus_per_node: int
    max_nodes: int
    price_per_gpu_hour: float
    node: Mapping[str, object]

    @property
    def node_price(self) -> float:
        return self.price_per_gpu_hour * self.gpus_per_node

    @property
    def label(self) -> str:
        return f"{self.gpus_per_node}×{self.gpu.key}"


@dataclass(frozen=True)
class Offers:
    """The resolved offers file: `serving` is its model/dtype/workload/slo/network as written."""

    source: Path
    offers: tuple[Offer, ...]
    serving: Mapping[str, object]
    model_name: str
    weights_bytes: float
    has_slo: bool

    def serving_for(self) -> dict:
        """The serving fields for a cluster file written anywhere: relative paths (a config.json model, a
        trace) made absolute, since the output folder may not exist while candidates are planned."""
        data = dict(self.serving)
        if str(data["model"]).endswith(".json"):
            data["model"] = _absolute(str(data["model"]), self.source.parent)
        workload = data["workload"]
        if isinstance(workload, Mapping) and "trace" in workload:
            data["workload"] = dict(workload) | {"trace": _absolute(str(workload["trace"]), self.source.parent)}
        return data


def _absolute(path: str, folder: Path) -> str:
    return (folder / path).resolve().as_posix()


def _resolve_offer(spec: OfferSpec, raw: Mapping, i: int, default_nic: object, catalog: Catalog, path: Path) -> Offer:
    where = f"{path}: offers[{i}]"
    try:
        gpu = catalog.gpu(spec.gpu)
    except LookupError as exc:
        raise InputError(f"{where}.gpu: {exc}.", hint="run `hexplan profiles gpus` for the list") from None
    node: dict[str, object] = {"gpu": gpu.key, "count": spec.gpus_per_node}
    if spec.interconnect is not None:
        try:
            node["interconnect"] = catalog.link(spec.interconnect).key
        except LookupError as exc:
            raise InputError(f"{where}.interconnect: {exc}.", hint="run `hexplan profiles links`") from None
    node["nic"] = raw.get("nic", default_nic)
    node["price"] = raw["price"]
    if "zone" in raw:
        node["zone"] = raw["zone"]
    nodes = spec.max_gpus // spec.gpus_per_node
    return Offer(i, gpu, spec.gpus_per_node, nodes, spec.price, node)


def load_offers(path: Path, catalog: Catalog) -> Offers:
    """Read and validate OFFERS.yaml; errors name the file and field (offers[i].gpu, workload.trace, …)."""
    data = load_yaml(path, what="offers file")
    reject_top_level_slo(data, path)
    spec = validate(OffersSpec, data, path)
    assert isinstance(data, dict)
    default = data["network"]["default"]
    default_nic = default if isinstance(default, str) else default["bandwidth"]
    offers = tuple(
        _resolve_offer(o, data["offers"][i], i, default_nic, catalog, path) for i, o in enumerate(spec.offers)
    )
    for offer in offers:
        if spec.dtype not in offer.gpu.peak_flops:
            raise InputError(
                f"{path}: offers[{offer.index}].gpu: {offer.gpu.key} has no {spec.dtype} support (the file's dtype).",
                hint="use dtype: float16 or remove that offer",
            )
    serving = {key: data[key] for key in ("model", "dtype", "workload", "network") if key in data}
    # The model, workload and trace are checked as a cluster file would check them, with this file's name.
    probe = cluster_from_data(serving | {"nodes": [{"name": "probe"} | dict(offers[0].node)]}, path, "", catalog)
    weights = probe.model.total_params * probe.dtype_bytes
    return Offers(path, offers, serving, probe.model.name, weights, probe.slo is not None)
