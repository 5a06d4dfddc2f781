"""A plan as a picture, in geometry only: boxes, cells, arrows, text. The SVG/HTML writer (outputs.svg)
and the PNG painter (outputs.raster, matplotlib) draw the same Scene, so the three files never disagree.

What is shown: each node is a box of its GPUs; a GPU is coloured by its replica (hue by role: blue
prefill, orange decode, purple colocated, grey idle) and labelled with the replica's tag (P1, D2, …),
its stage and that stage's layer range; dashed grey arrows join a pipeline's stages in order; KV
routes are curved arrows from prefill to decode, width ∝ rate, colour = utilisation of the busiest
wire they cross (green 0 % → yellow 50 % → red 100 %, outputs.kvload); the bottleneck the plan
records (summary.bottleneck) is outlined in red: the saturated replicas of that role, or for KV
transfer the saturated routes and the nodes whose NIC is saturated. Coordinates are SVG pixels
(y grows downwards), rounded by the writers, so the same plan gives the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from planner.inputs.problem import Cluster
from planner.outputs.kvload import KvLoads, kv_loads, saturated_replicas
from planner.plans.schema import Plan, ReplicaPlan

CELL_W, CELL_H, GAP, PER_ROW, TITLE_H = 62.0, 40.0, 6.0, 8, 22.0
MARGIN, HEADER_H, LEGEND_ROW = 20.0, 64.0, 22.0
ROLE_PALETTES = {
    "prefill": ("#1f77b4", "#6baed6", "#2c5f8a", "#9ecae1", "#08519c", "#4292c6"),
    "decode": ("#ff7f0e", "#fdae6b", "#d9480f", "#fdd0a2", "#a63603", "#f16913"),
    "colocated": ("#9467bd", "#bcbddc", "#6a51a3", "#dadaeb", "#54278f", "#807dba"),
}
IDLE, BOTTLENECK, PIPELINE = "#d9d9d9", "#d62728", "#555555"
UTILISATION_STOPS = ((0.0, (44, 160, 44)), (0.5, (232, 195, 26)), (1.0, (214, 39, 40)))
TAG_PREFIX = {"prefill": "P", "decode": "D", "colocated": "C"}

Point = tuple[float, float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    @property
    def centre(self) -> Point:
        return self.x + self.w / 2, self.y + self.h / 2


@dataclass(frozen=True)
class Text:
    at: Point
    text: str
    size: float = 11.0
    anchor: str = "start"  # start | middle | end
    bold: bool = False


@dataclass(frozen=True)
class Cell:
    gpu: str
    rect: Rect
    fill: str
    lines: tuple[str, ...]  # what the cell says (tag; stage and layers)
    title: str  # tooltip
    replica: str | None
    bottleneck: bool


@dataclass(frozen=True)
class Frame:
    node: str
    rect: Rect
    label: str
    title: str
    bottleneck: bool  # its NIC is a saturated KV hop


@dataclass(frozen=True)
class Arrow:
    start: Point
    control: Point  # quadratic Bézier control point
    end: Point
    head: tuple[Point, Point, Point]
    width: float
    colour: str
    kind: str  # kv | pipeline
    title: str
    bottleneck: bool


@dataclass(frozen=True)
class Swatch:
    colour: str
    label: str
    kind: str  # fill | line | outline


@dataclass(frozen=True)
class Scene:
    width: float
    height: float
    heading: tuple[Text, ...]
    frames: tuple[Frame, ...]
    cells: tuple[Cell, ...]
    arrows: tuple[Arrow, ...]
    legend: tuple[tuple[Rect, Swatch], ...]
    legend_text: tuple[Text, ...]
    tags: dict[str, str]  # replica id → tag


def utilisation_colour(share: float) -> str:
    """Green → yellow → red over 0 … 1 (beyond 1: red)."""
    share = min(max(share, 0.0), 1.0) if math.isfinite(share) else 1.0
    for (lo, a), (hi, b) in pairwise(UTILISATION_STOPS):
        if share <= hi:
            t = (share - lo) / (hi - lo)
            return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b, strict=True))
    return "#d62728"


def replica_tags(plan: Plan) -> dict[str, str]:
    """P1, P2, … D1, … C1, … in the plan file's order (role, id)."""
    tags, counts = {}, dict.fromkeys(TAG_PREFIX, 0)
    for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        counts[r.role] += 1
        tags[r.id] = f"{TAG_PREFIX[r.role]}{counts[r.role]}"
    return tags


def _colours(plan: Plan) -> dict[str, str]:
    seen = dict.fromkeys(TAG_PREFIX, 0)
    colours = {}
    for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        palette = ROLE_PALETTES[r.role]
        colours[r.id] = palette[seen[r.role] % len(palette)]
        seen[r.role] += 1
    return colours


def build_scene(plan: Plan, cluster: Cluster, source: str) -> Scene:
    """The picture of `plan` on `cluster` (module docstring); `source` names the plan in the heading."""
    loads = kv_loads(plan, cluster)
    tags, colours = replica_tags(plan), _colours(plan)
    hot = _hot_replicas(plan)
    hot_nodes = {hop.a for hop, u in loads.hops.items() if hop.kind.startswith("nic") and u >= 0.999}
    hot_nodes = hot_nodes if plan.summary.bottleneck == "kv_transfer" else set()
    frames, cells = _nodes(plan, cluster, tags, colours, hot, hot_nodes)
    where = {c.gpu: c.rect.centre for c in cells}
    arrows = _pipeline_arrows(plan, where, tags) + _kv_arrows(plan, where, tags, loads)
    bottom = max((f.rect.y + f.rect.h for f in frames), default=HEADER_H)
    width = max((f.rect.x + f.rect.w for f in frames), default=400.0) + MARGIN
    legend, legend_text, height = _legend(plan, loads, bottom + MARGIN, max(width, 760.0))
    return Scene(
        width=max(width, 760.0),
        height=height,
        heading=_heading(plan, source, tags, hot, loads),
        frames=tuple(frames),
        cells=tuple(cells),
        arrows=tuple(arrows),
        legend=tuple(legend),
        legend_text=tuple(legend_text),
        tags=tags,
    )


def _hot_replicas(plan: Plan) -> set[str]:
    """The replicas to outline: the saturated ones of the bottleneck's role."""
    role = {"prefill": "prefill", "decode": "decode", "colocated": "colocated"}.get(plan.summary.bottleneck)
    return {r.id for r in plan.replicas if r.role == role and r.id in saturated_replicas(plan)}


def _stage_of(plan: Plan) -> dict[str, tuple[ReplicaPlan, int]]:
    return {g: (r, k) for r in plan.replicas for k, stage in enumerate(r.stages) for g in stage.gpus}


def _nodes(
    plan: Plan, cluster: Cluster, tags: dict, colours: dict, hot: set[str], hot_nodes: set[str]
) -> tuple[list[Frame], list[Cell]]:
    """Node frames in a grid (same-size columns), GPU cells inside, PER_ROW to a row."""
    placed = _stage_of(plan)
    widths = [min(n.count, PER_ROW) * (CELL_W + GAP) + GAP for n in cluster.nodes]
    heights = [TITLE_H + math.ceil(n.count / PER_ROW) * (CELL_H + GAP) + GAP for n in cluster.nodes]
    column_w = max(widths, default=0.0) + GAP * 2
    columns = max(1, min(len(cluster.nodes), math.ceil(math.sqrt(len(cluster.nodes))), 6))
    frames, cells, y = [], [], HEADER_H
    for first in range(0, len(cluster.nodes), columns):
        row = range(first, min(first + columns, len(cluster.nodes)))
        for slot, i in enumerate(row):
            node = cluster.nodes[i]
            x = MARGIN + slot * column_w
            rect = Rect(x, y, widths[i], heights[i])
            price = f"${node.price_per_gpu_hour * node.count:.2f}/h"
            title = f"node {node.name}: {node.count}× {node.gpu.key}, NIC {node.nic * 8 / 1e9:g} Gbit/s, {price}"
            frames.append(Frame(node.name, rect, f"{node.name} · {node.count}× {node.gpu.key}", title,
                                node.name in hot_nodes))  # fmt: skip
            for index in range(node.count):
                gpu = f"{node.name}/{index}"
                cx = x + GAP + (index % PER_ROW) * (CELL_W + GAP)
                cy = y + TITLE_H + (index // PER_ROW) * (CELL_H + GAP)
                cells.append(_cell(gpu, Rect(cx, cy, CELL_W, CELL_H), placed.get(gpu), tags, colours, hot))
        y += max(heights[i] for i in row) + GAP * 2
    return frames, cells


def _cell(gpu: str, rect: Rect, placed, tags: dict, colours: dict, hot: set[str]) -> Cell:
    if placed is None:
        return Cell(gpu, rect, IDLE, (gpu.rsplit("/", 1)[1], "idle"), f"{gpu}: idle", None, False)
    replica, k = placed
    first, end = replica.stages[k].layers
    stage = f"S{k + 1} {first}–{end}" if replica.pp > 1 else f"L {first}–{end}"
    title = (
        f"{gpu}: {tags[replica.id]} = {replica.id} ({replica.role}, TP{replica.tp}×PP{replica.pp}), "
        f"stage {k + 1} of {replica.pp}, layers {first}–{end}"
    )
    return Cell(gpu, rect, colours[replica.id], (tags[replica.id], stage), title, replica.id, replica.id in hot)


def _centroid(points: list[Point]) -> Point:
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def _arrow(start: Point, end: Point, bend: float, width: float, **rest) -> Arrow:
    """A quadratic Bézier from start to end, bowed sideways by `bend` × its length, with a head at the end."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    control = ((x0 + x1) / 2 - dy * bend, (y0 + y1) / 2 + dx * bend)
    tx, ty = x1 - control[0], y1 - control[1]
    norm = math.hypot(tx, ty) or 1.0
    ux, uy = tx / norm, ty / norm
    size = 6.0 + width
    back = (x1 - ux * size, y1 - uy * size)
    side = (-uy * size / 2, ux * size / 2)
    head = ((x1, y1), (back[0] + side[0], back[1] + side[1]), (back[0] - side[0], back[1] - side[1]))
    return Arrow(start, control, end, head, width, **rest)


def _pipeline_arrows(plan: Plan, where: dict[str, Point], tags: dict) -> list[Arrow]:
    arrows = []
    for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        centres = [_centroid([where[g] for g in stage.gpus]) for stage in r.stages]
        centres = [(x, y + CELL_H / 2 - 3) for x, y in centres]  # along the cells' lower edge, clear of the text
        for k in range(len(r.stages) - 1):
            (a, b), (c, d) = r.stages[k].layers, r.stages[k + 1].layers
            title = f"{tags[r.id]} pipeline: stage {k + 1} (layers {a}–{b}) → stage {k + 2} (layers {c}–{d})"
            arrows.append(_arrow(centres[k], centres[k + 1], 0.15, 1.5, colour=PIPELINE, kind="pipeline",
                                 title=title, bottleneck=False))  # fmt: skip
    return arrows


def _kv_arrows(plan: Plan, where: dict[str, Point], tags: dict, loads: KvLoads) -> list[Arrow]:
    """One arrow per route with traffic, from the prefill replica's centre to the decode replica's."""
    centre = {r.id: _centroid([where[g] for g in r.gpus]) for r in plan.replicas}
    top = max((load.route.rate_rps for load in loads.routes), default=0.0)
    kv_bound = plan.summary.bottleneck == "kv_transfer"
    arrows = []
    for load in sorted(loads.routes, key=lambda x: (x.route.source, x.route.target)):
        route = load.route
        if route.rate_rps <= 0:
            continue
        busiest = max(load.hops, key=lambda h: (loads.hops[h], h.kind, h.a, h.b))
        title = (
            f"KV {tags[route.source]} → {tags[route.target]} ({route.source} → {route.target}): "
            f"{route.rate_rps:.3g} req/s, {route.kv_gbps:.3g} Gbit/s; busiest wire {busiest.label} "
            f"at {load.utilisation:.0%}"
        )
        width = 1.5 + 6.0 * route.rate_rps / top
        arrows.append(_arrow(centre[route.source], centre[route.target], 0.2, width,
                             colour=utilisation_colour(load.utilisation), kind="kv", title=title,
                             bottleneck=kv_bound and load.saturated))  # fmt: skip
    return arrows


def _heading(plan: Plan, source: str, tags: dict, hot: set[str], loads: KvLoads) -> tuple[Text, ...]:
    s = plan.summary
    figures = (
        f"{s.throughput_rps:.3g} req/s · TTFT {s.ttft_s * 1e3:.0f} ms · TPOT {s.tpot_s * 1e3:.1f} ms · "
        f"${s.cost_per_hour_usd:.2f}/h · ${s.usd_per_million_output_tokens:.3g} per 1M output tokens · "
        f"{s.gpus_used} GPUs"
    )
    if s.bottleneck == "kv_transfer" and (busiest := loads.busiest()) is not None:
        what = f"KV transfer ({busiest[0].label} at {busiest[1]:.0%})"
    elif hot:
        named = sorted((tags[r] for r in hot), key=lambda t: (t[0], int(t[1:])))
        more = f" and {len(named) - 12} more" if len(named) > 12 else ""
        what = f"{s.bottleneck} (saturated: {', '.join(named[:12])}{more})"
    else:
        what = s.bottleneck
    return (
        Text((MARGIN, 24.0), f"{source}: {plan.model} on {len(plan.replicas)} replicas", 15.0, bold=True),
        Text((MARGIN, 42.0), figures, 11.0),
        Text((MARGIN, 57.0), f"bottleneck: {what}", 11.0),
    )


def _legend(plan: Plan, loads: KvLoads, top: float, width: float) -> tuple[list, list[Text], float]:
    """Swatches with their labels in rows under the nodes; returns them and the scene's height."""
    rate = max((load.route.rate_rps for load in loads.routes), default=0.0)
    items = [
        Swatch(ROLE_PALETTES["prefill"][0], "prefill replica (P…)", "fill"),
        Swatch(ROLE_PALETTES["decode"][0], "decode replica (D…)", "fill"),
        Swatch(ROLE_PALETTES["colocated"][0], "colocated replica (C…)", "fill"),
        Swatch(IDLE, "idle GPU", "fill"),
        Swatch(BOTTLENECK, f"bottleneck ({plan.summary.bottleneck})", "outline"),
        Swatch(PIPELINE, "pipeline stage order (S1 → S2 …)", "dashed"),
        Swatch(utilisation_colour(0.0), "KV route, wire 0 % busy", "line"),
        Swatch(utilisation_colour(0.5), "50 %", "line"),
        Swatch(utilisation_colour(1.0), "100 % (saturated)", "line"),
    ]
    swatches, texts, x, y = [], [], MARGIN, top
    for item in items:
        span = 28.0 + 6.5 * len(item.label)
        if x + span > width - MARGIN:
            x, y = MARGIN, y + LEGEND_ROW
        swatches.append((Rect(x, y, 18.0, 12.0), item))
        texts.append(Text((x + 24.0, y + 10.5), item.label, 10.5))
        x += span + 14.0
    y += LEGEND_ROW
    note = f"arrow width ∝ KV route rate (widest: {rate:.3g} req/s); hover for details"
    texts.append(Text((MARGIN, y + 10.5), note, 10.5))
    return swatches, texts, y + LEGEND_ROW + MARGIN / 2
