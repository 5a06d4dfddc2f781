"""Plots (matplotlib, the optional `plot` extra, loaded only here and only when called).

- `compare_plot`: `hexplan compare --plot`: per planner, simulated goodput (req/s within the SLO) and
  dollars per million output tokens at saturation (lower is better); infeasible planners are named.
- `pareto_plot`: a Pareto frontier of plans (what `hexplan solve --pareto` writes as JSON: a list of
  points with ttft_s, tpot_s, attainment, goodput_rps, usd_per_hour, …): goodput against TPOT (the
  throughput–latency trade-off, each point's TTFT in its label) and goodput against $/h. Points another
  point beats on both axes of a panel are drawn faded; the frontier is the line through the others.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import InputError
from planner.outputs.raster import pyplot
from planner.yamlio import format_validation_error, read_text

OURS, OTHERS, FADED = "#1f77b4", "#9e9e9e", "#c7c7c7"


class ParetoPoint(BaseModel):
    """One plan on the frontier; fields beyond these (its plan file, SLO targets, …) are kept, unused."""

    model_config = ConfigDict(extra="allow", frozen=True)

    ttft_s: float = Field(ge=0)
    tpot_s: float = Field(ge=0)
    attainment: float = Field(ge=0, le=1)
    goodput_rps: float = Field(ge=0)
    usd_per_hour: float = Field(ge=0)


def read_pareto(path: Path) -> list[ParetoPoint]:
    """A frontier JSON: a list of points, or an object whose `points` is that list; InputError naming
    the file and the point's index for anything else."""
    try:
        data = json.loads(read_text(path, what="Pareto frontier JSON"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}).") from None
    points = data.get("points") if isinstance(data, dict) else data
    if not isinstance(points, list) or not points:
        raise InputError(f"{path}: expected a non-empty list of points (or an object with `points`).")
    out = []
    for i, point in enumerate(points):
        try:
            out.append(ParetoPoint.model_validate(point))
        except ValidationError as exc:
            raise InputError(format_validation_error(Path(f"{path}: points[{i}]"), exc, ParetoPoint)) from None
    return out


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
    return buffer.getvalue()


def compare_plot(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """PNG of `hexplan compare`'s rows (planner, goodput_rps, output_tokens_per_usd or infeasible); ours is
    the row named hexgen2 (compare ranks rows by goodput, so it need not come first). Without an SLO a row's
    goodput is None (not defined) and is drawn as 0."""
    plt = pyplot()
    names = [str(r["planner"]) for r in rows]
    feasible = ["goodput_rps" in r for r in rows]
    goodput = [float(r["goodput_rps"] or 0.0) if ok else 0.0 for r, ok in zip(rows, feasible, strict=True)]
    per_mtok = [_usd_per_mtok(r) if ok else 0.0 for r, ok in zip(rows, feasible, strict=True)]
    ours = "hexgen2" if "hexgen2" in names else names[0] if names else ""
    colours = [OURS if name == ours else OTHERS for name in names]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    try:
        _bars(left, names, goodput, feasible, colours, "goodput, req/s within the SLO (higher is better)", "{:.3g}")
        _bars(right, names, per_mtok, feasible, colours, "$ per 1M output tokens at saturation (lower is better)",
              "${:.3g}")  # fmt: skip
        figure.suptitle(title, fontsize=11)
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)


def _bars(axes: Any, names: list[str], values: list[float], feasible: list[bool], colours: list[str], label: str,
          fmt: str) -> None:  # fmt: skip
    bars = axes.bar(names, values, color=colours)
    for bar, value, ok in zip(bars, values, feasible, strict=True):
        text = fmt.format(value) if ok and math.isfinite(value) else "infeasible"
        at = (bar.get_x() + bar.get_width() / 2, bar.get_height())
        axes.annotate(text.replace("$", r"\$"), at, ha="center", va="bottom", fontsize=9, xytext=(0, 2),
                      textcoords="offset points")  # fmt: skip
    axes.set_title(label.replace("$", r"\$"), fontsize=10)
    axes.spines[["top", "right"]].set_visible(False)
    axes.margins(y=0.15)


def _usd_per_mtok(row: Mapping[str, Any]) -> float:
    per_usd = float(row.get("output_tokens_per_usd", math.nan))
    return 1e6 / per_usd if per_usd > 0 else math.nan


def frontier(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (x no larger and y no smaller, one strictly), by x.
    Here x is a cost (TPOT, $/h) and y a benefit (goodput). O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    kept, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            kept.append(i)
            best = points[i][1]
    return kept


def pareto_plot(points: Sequence[ParetoPoint], title: str) -> bytes:
    """PNG of a Pareto frontier (module docstring)."""
    plt = pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.2))
    try:
        axes_specs = (
            (panels[0], [p.tpot_s * 1e3 for p in points], "TPOT, ms"),
            (panels[1], [p.usd_per_hour for p in points], "$/h"),
        )
        for axes, xs, xlabel in axes_specs:
            ys = [p.goodput_rps for p in points]
            best = frontier(list(zip(xs, ys, strict=True)))
            colours = [OURS if i in best else FADED for i in range(len(points))]
            axes.scatter(xs, ys, c=colours, zorder=3)
            axes.plot([xs[i] for i in best], [ys[i] for i in best], color=OURS, zorder=2)
            for i, p in enumerate(points):
                label = f"TTFT {p.ttft_s:.2g}s, {p.attainment:.0%}"
                axes.annotate(label, (xs[i], ys[i]), fontsize=7, xytext=(4, 4), textcoords="offset points")
            axes.set_xlabel(xlabel.replace("$", r"\$"))
            axes.set_ylabel("goodput, req/s")
            axes.spines[["top", "right"]].set_visible(False)
        panels[0].set_title("throughput–latency", fontsize=10)
        panels[1].set_title("throughput–cost", fontsize=10)
        figure.suptitle(title, fontsize=11)
        figure.tight_layout()
        return _png(figure)
    finally:
        plt.close(figure)
