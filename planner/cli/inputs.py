"""Commands about inputs: `validate` a cluster file, list `profiles`, print JSON `schema`s."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from planner.cli.app import CalibrationOption, ClusterArgument, ProfilesOption, app, catalog_from, console, load
from planner.cli.render import cluster_tables
from planner.costs.memory import check_model_fits
from planner.costs.usage import uncalibrated_gpu_types
from planner.inputs.cluster import ClusterSpec
from planner.plans.schema import Plan
from planner.units import format_bandwidth


@app.command()
def validate(
    cluster_file: ClusterArgument, profiles: ProfilesOption = None, calibration: CalibrationOption = None
) -> None:
    """Check a cluster file and print what it describes (GPUs by type, memory, $/h, bandwidth, calibration)."""
    cluster = load(cluster_file, profiles, calibration)
    check_model_fits(cluster)
    for table in cluster_tables(cluster):
        console.print(table)
    for described in uncalibrated_gpu_types(cluster):
        console.print(f"[yellow]uncalibrated[/]: {described}: its step times are not measured", soft_wrap=True)
    console.print(f"[green]ok[/]: {cluster_file} is valid")


class Kind(StrEnum):
    gpus = "gpus"
    links = "links"
    models = "models"


@app.command("profiles")
def list_profiles(
    kind: Annotated[Kind, typer.Argument(help="which catalogue")] = Kind.gpus,
    profiles: ProfilesOption = None,
) -> None:
    """List the GPU, link or model catalogue (profiles/*.yaml plus --profiles dirs)."""
    catalog = catalog_from(profiles)
    table = Table(title=f"{kind.value} catalogue")
    if kind is Kind.gpus:
        for column in ("key", "name", "memory", "mem bw", "fp16 TFLOPS", "bf16 TFLOPS", "link", "$/h"):
            table.add_column(column)
        for g in sorted(catalog.gpus.values(), key=lambda g: g.key):
            bf16 = g.peak_flops.get("bfloat16")
            table.add_row(
                g.key,
                g.name,
                f"{g.memory / 1e9:.0f} GB",
                f"{g.memory_bandwidth / 1e9:.0f} GB/s",
                f"{g.flops('float16') / 1e12:.1f}",
                f"{bf16 / 1e12:.1f}" if bf16 else "—",
                g.intra_node_link,
                f"{g.price_per_hour:.2f}",
            )
    elif kind is Kind.links:
        for column in ("key", "kind", "bandwidth", "GB/s", "latency"):
            table.add_column(column)
        for link in sorted(catalog.links.values(), key=lambda link: (link.kind, -link.bandwidth)):
            table.add_row(
                link.key,
                link.kind,
                format_bandwidth(link.bandwidth),
                f"{link.bandwidth / 1e9:.2f}",
                f"{link.latency * 1e6:.1f} us",
            )
    else:
        for column in ("key", "params", "layers", "hidden", "heads", "kv heads", "ffn", "vocab", "context"):
            table.add_column(column)
        for m in sorted(catalog.models.values(), key=lambda m: m.name):
            table.add_row(
                m.name,
                f"{m.total_params / 1e9:.1f}B",
                str(m.layers),
                str(m.hidden),
                str(m.heads),
                str(m.kv_heads),
                str(m.ffn),
                str(m.vocab),
                str(m.max_position_embeddings),
            )
    console.print(table)


class SchemaKind(StrEnum):
    cluster = "cluster"
    plan = "plan"


@app.command()
def schema(kind: Annotated[SchemaKind, typer.Argument(help="cluster or plan")]) -> None:
    """Print the JSON Schema of cluster.yaml or plan.yaml."""
    model = ClusterSpec if kind is SchemaKind.cluster else Plan
    print(json.dumps(model.model_json_schema(by_alias=True), indent=2, sort_keys=True))
