"""A Scene painted by matplotlib into a PNG: the same geometry as the SVG, pixel for pixel at scale 1.

matplotlib is the optional `plot` extra, imported here only when a PNG is asked for; without it the
caller gets an InputError saying how to install it (SVG and HTML need nothing).
"""

from __future__ import annotations

import io
from typing import Any

from planner.errors import InputError
from planner.outputs.scene import BOTTLENECK, Arrow, Rect, Scene, Text

SCALE = 2.0  # device pixels per scene pixel: a crisp picture on high-density screens


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display), or an InputError naming the extra."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise InputError(
            "a PNG needs matplotlib, which is not installed.",
            hint="pip install 'hexgen2[plot]' (or write .svg or .html, which need nothing more)",
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


ALIGN = {"start": "left", "middle": "center", "end": "right"}


def to_png(scene: Scene) -> bytes:
    plt = pyplot()
    figure = plt.figure(figsize=(scene.width / 100, scene.height / 100), dpi=100 * SCALE)
    try:
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_xlim(0, scene.width)
        axes.set_ylim(scene.height, 0)  # SVG coordinates: y grows downwards
        axes.axis("off")
        _paint(axes, scene)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100 * SCALE, metadata={"Software": None})
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _paint(axes: Any, scene: Scene) -> None:
    from matplotlib.patches import Polygon

    for t in scene.heading:
        _write(axes, t)
    for frame in scene.frames:
        _box(
            axes, frame.rect, "#f7f7f7", BOTTLENECK if frame.bottleneck else "#888888", 3 if frame.bottleneck else 1, 6
        )
        _write(axes, Text((frame.rect.x + 6, frame.rect.y + 15), frame.label, 11.5, bold=True))
    for cell in scene.cells:
        _box(axes, cell.rect, cell.fill, BOTTLENECK if cell.bottleneck else "#ffffff", 3 if cell.bottleneck else 1, 3)
        for k, line in enumerate(cell.lines):
            at = (cell.rect.x + cell.rect.w / 2, cell.rect.y + 16 + 14 * k)
            _write(axes, Text(at, line, 11.0 if k == 0 else 9.5, "middle", k == 0))
    for arrow in scene.arrows:
        if arrow.bottleneck:
            _curve(axes, arrow, BOTTLENECK, arrow.width + 5, 0.35, dashed=False)
        _curve(axes, arrow, arrow.colour, arrow.width, 0.85, dashed=arrow.kind == "pipeline")
        axes.add_patch(Polygon(arrow.head, closed=True, facecolor=arrow.colour, edgecolor="none"))
    for rect, swatch in scene.legend:
        if swatch.kind in ("line", "dashed"):
            y = rect.y + rect.h / 2
            style = {
                "linewidth": 3 if swatch.kind == "line" else 1.2,
                "linestyle": "--" if swatch.kind == "dashed" else "-",
            }
            axes.plot([rect.x, rect.x + rect.w], [y, y], color=swatch.colour, **style)
        elif swatch.kind == "fill":
            _box(axes, rect, swatch.colour, "#ffffff", 1, 0)
        else:
            _box(axes, rect, "#ffffff", swatch.colour, 3, 0)
    for t in scene.legend_text:
        _write(axes, t)


def _box(axes: Any, r: Rect, fill: str, edge: str, width: float, radius: float) -> None:
    from matplotlib.patches import FancyBboxPatch

    style = f"round,pad=0,rounding_size={radius}"
    patch = FancyBboxPatch((r.x, r.y), r.w, r.h, boxstyle=style, facecolor=fill, edgecolor=edge, linewidth=width * 0.75)
    axes.add_patch(patch)


def _write(axes: Any, t: Text) -> None:
    """SVG pixels are 0.75 pt; "$" is escaped, else it would start matplotlib's math mode."""
    weight = "bold" if t.bold else "normal"
    text = t.text.replace("$", r"\$")
    axes.text(
        *t.at, text, fontsize=t.size * 0.75, ha=ALIGN[t.anchor], va="baseline", color="#222222", fontweight=weight
    )


def _curve(axes: Any, a: Arrow, colour: str, width: float, alpha: float, *, dashed: bool) -> None:
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MplPath

    path = MplPath([a.start, a.control, a.end], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
    style = (0, (5, 4)) if dashed else "solid"
    patch = PathPatch(path, fill=False, edgecolor=colour, linewidth=width * 0.75, alpha=alpha, linestyle=style)
    axes.add_patch(patch)
