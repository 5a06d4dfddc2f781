"""Rich tables for clusters and plans, shared by every command that prints them."""

from __future__ import annotations

from collections import Counter, defaultdict

from rich.table import Table

from planner.costs.usage import CalibrationUse, describe
from planner.inputs.problem import Cluster, Slo
from planner.plans.schema import Plan
from planner.reference.pareto import ParetoPoint
from planner.units import format_bandwidth, format_duration


def cluster_tables(cluster: Cluster) -> list[Table]:
    by_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    price: Counter[str] = Counter()
    for node in cluster.nodes:
        by_type[node.gpu.key][0] += node.count
        by_type[node.gpu.key][1] += 1
        price[node.gpu.key] += node.price_per_gpu_hour * node.count
    gpus = Table(title=f"{cluster.source}: {len(cluster.gpus)} GPUs, ${cluster.total_price_per_hour:.2f}/h")
    for column in ("GPU type", "GPUs", "nodes", "memory each", "memory total", "$/h"):
        gpus.add_column(column, justify="left" if column == "GPU type" else "right")
    for key in sorted(by_type):
        count, nodes = by_type[key]
        memory = cluster.node_by_name[next(n.name for n in cluster.nodes if n.gpu.key == key)].gpu.memory
        gpus.add_row(
            key, str(count), str(nodes), f"{memory / 1e9:.0f} GB", f"{count * memory / 1e9:.0f} GB", f"{price[key]:.2f}"
        )
    model = cluster.model
    gpus.caption = (
        f"model {model.name}: {model.total_params / 1e9:.1f}B params, {cluster.dtype}; "
        f"workload: prompt {cluster.workload.prompt.mean:.0f}, output {cluster.workload.output.mean:.0f} tokens (mean)"
    )
    tables = [gpus]
    if len(cluster.nodes) <= 16:
        matrix = Table(title="node ↔ node bandwidth per direction (diagonal: intra-node link)")
        matrix.add_column("")
        for node in cluster.nodes:
            matrix.add_column(node.name, justify="right")
        for i, node in enumerate(cluster.nodes):
            row = cluster.bandwidth_matrix[i]
            matrix.add_row(node.name, *(format_bandwidth(v) if v > 0 else "—" for v in row))
        tables.append(matrix)
    return tables


def metric_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """Two columns, metric and value, no header: how every command prints a set of figures."""
    table = Table(title=title, show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def uncalibrated_text(plan: Plan) -> str:
    """GPU types and links whose figures are not their own measurements ('' when all are calibrated)."""
    return ", ".join(
        describe(CalibrationUse(c.kind, c.key, c.id, c.sha256, c.status, c.borrowed_from))
        for c in plan.cost_calibrations
        if c.status != "calibrated"
    )


def summary_table(plan: Plan, title: str = "plan summary") -> Table:
    s = plan.summary
    if plan.slo is None or s.goodput_rps is None:
        goodput = "not defined (no SLO)"
    else:
        slo = plan.slo
        goodput = f"{s.goodput_rps:.3f} req/s ({Slo(slo.ttft_s, slo.tpot_s, slo.attainment).describe()})"
    table = metric_table(
        title,
        [
            ("goodput", goodput),
            ("throughput (saturated)", f"{s.throughput_rps:.3f} req/s"),
            ("output tokens", f"{s.output_tokens_per_s:,.0f} tokens/s"),
            ("TTFT (unloaded)", f"{s.ttft_s * 1e3:.0f} ms"),
            ("TPOT", f"{s.tpot_s * 1e3:.1f} ms"),
            ("cost", f"${s.cost_per_hour_usd:.2f}/h ({s.gpus_used} GPUs)"),
            ("$ per 1M output tokens", f"{s.usd_per_million_output_tokens:.3f}"),
            ("bottleneck", s.bottleneck),
        ],
    )
    if uncalibrated := uncalibrated_text(plan):
        table.add_row("uncalibrated", uncalibrated)
    return table


def replicas_table(plan: Plan) -> Table:
    table = Table(title=f"{len(plan.replicas)} replicas, {len(plan.routes)} routes")
    numbers = ("capacity req/s", "goodput req/s", "latency", "max seqs", "max tokens")
    for column in ("id", "role", "GPUs", "TP×PP", "layers", *numbers):
        table.add_column(column, justify="right" if column in numbers else "left")
    for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        types = Counter(r.gpu_types)
        gpus = " + ".join(f"{n}×{t}" if r.tp == 1 else f"{n * r.tp}×{t}" for t, n in sorted(types.items()))
        layers = " | ".join(f"{s.layers[0]}–{s.layers[1]}" for s in r.stages)
        latency = f"{r.latency_s * 1e3:.0f} ms" if r.role == "prefill" else f"{r.latency_s * 1e3:.1f} ms/tok"
        goodput = "—" if r.goodput_rps is None else f"{r.goodput_rps:.2f}"
        table.add_row(
            r.id,
            r.role,
            gpus,
            f"{r.tp}×{r.pp}",
            layers,
            f"{r.capacity_rps:.2f}",
            goodput,
            latency,
            str(r.engine.max_num_seqs),
            str(r.engine.max_num_batched_tokens),
        )
    return table


def reasons_lines(plan: Plan) -> list[str]:
    """Why each replica has its role (plan.yaml `replicas[i].reason`), one line each; none for plans without."""
    reasons = [(r.id, r.reason) for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)) if r.reason]
    return ["why each replica has its role:", *(f"  {rid}: {reason}" for rid, reason in reasons)] if reasons else []


def pareto_table(points: list[ParetoPoint], title: str) -> Table:
    table = Table(title=title)
    columns = ("TTFT", "TPOT", "goodput req/s", "sim goodput", "$/h", "GPUs", "replicas", "bottleneck", "frontier")
    for column in columns:
        table.add_column(column, justify="left" if column in ("replicas", "bottleneck") else "right")
    for p in points:
        simulated = "—" if p.simulated_goodput_rps is None else f"{p.simulated_goodput_rps:.2f}"
        replicas = ", ".join(f"{n} {role}" for role, n in p.replicas.items()) or (p.infeasible or "")[:40]
        table.add_row(
            format_duration(p.ttft_s),
            format_duration(p.tpot_s),
            f"{p.goodput_rps:.2f}",
            simulated,
            f"{p.usd_per_hour:.2f}",
            str(p.gpus_used),
            replicas,
            p.bottleneck,
            "●" if p.frontier else "",
        )
    return table


def routes_table(plan: Plan) -> Table:
    table = Table(title="KV routes (prefill → decode)")
    for column in ("from", "to", "rate req/s", "link capacity req/s", "KV Gbit/s"):
        table.add_column(column, justify="left" if column in ("from", "to") else "right")
    for route in sorted(plan.routes, key=lambda r: (r.source, r.target)):
        table.add_row(
            route.source, route.target, f"{route.rate_rps:.3f}", f"{route.capacity_rps:.2f}", f"{route.kv_gbps:.2f}"
        )
    return table
