"""A Scene as SVG (built with xml.etree, no dependency) and as one self-contained HTML page.

Why our own SVG rather than matplotlib's: the drawing must come with the core install (`make demo`
writes out/plan.svg without the plot extra), be byte-identical for the same plan (matplotlib's SVG
carries ids and metadata that change), and carry hover tooltips (<title>) and data attributes that
tests and people can read. The PNG is matplotlib's rendering of the same Scene (outputs.raster).
The HTML page inlines the SVG plus the replica and route tables: no script, stylesheet or font
from elsewhere, so the file opens anywhere offline.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET

from planner.outputs.scene import BOTTLENECK, Arrow, Scene, Text
from planner.plans.schema import Plan

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
SVG_NS = "http://www.w3.org/2000/svg"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(parent: ET.Element, text: Text, fill: str = "#222222") -> ET.Element:
    element = ET.SubElement(
        parent,
        "text",
        x=_num(text.at[0]),
        y=_num(text.at[1]),
        fill=fill,
        attrib={"font-size": _num(text.size), "text-anchor": text.anchor},
    )
    if text.bold:
        element.set("font-weight", "bold")
    element.text = text.text
    return element


def _title(parent: ET.Element, text: str) -> None:
    ET.SubElement(parent, "title").text = text


def _path(arrow: Arrow) -> str:
    (x0, y0), (cx, cy), (x1, y1) = arrow.start, arrow.control, arrow.end
    return f"M {_num(x0)} {_num(y0)} Q {_num(cx)} {_num(cy)} {_num(x1)} {_num(y1)}"


def svg_element(scene: Scene) -> ET.Element:
    root = ET.Element(
        "svg",
        xmlns=SVG_NS,
        width=_num(scene.width),
        height=_num(scene.height),
        viewBox=f"0 0 {_num(scene.width)} {_num(scene.height)}",
        attrib={"font-family": FONT},
    )
    ET.SubElement(root, "rect", width="100%", height="100%", fill="#ffffff")
    for text in scene.heading:
        _text(root, text).set("class", "heading")
    for frame in scene.frames:
        group = ET.SubElement(root, "g", attrib={"class": "node", "data-node": frame.node})
        _title(group, frame.title)
        r = frame.rect
        stroke = BOTTLENECK if frame.bottleneck else "#888888"
        wide = {"stroke-width": "3" if frame.bottleneck else "1"}
        ET.SubElement(group, "rect", x=_num(r.x), y=_num(r.y), width=_num(r.w), height=_num(r.h), rx="6",
                      fill="#f7f7f7", stroke=stroke, attrib=wide)  # fmt: skip
        _text(group, Text((r.x + 6, r.y + 15), frame.label, 11.5, bold=True))
    for cell in scene.cells:
        attrib = {"class": "gpu" + (" bottleneck" if cell.bottleneck else ""), "data-gpu": cell.gpu}
        if cell.replica:
            attrib["data-replica"] = cell.replica
        group = ET.SubElement(root, "g", attrib=attrib)
        _title(group, cell.title)
        r = cell.rect
        ET.SubElement(group, "rect", x=_num(r.x), y=_num(r.y), width=_num(r.w), height=_num(r.h), rx="3",
                      fill=cell.fill, stroke=BOTTLENECK if cell.bottleneck else "#ffffff",
                      attrib={"stroke-width": "3" if cell.bottleneck else "1"})  # fmt: skip
        for k, line in enumerate(cell.lines):
            _text(group, Text((r.x + r.w / 2, r.y + 16 + 14 * k), line, 11.0 if k == 0 else 9.5, "middle", k == 0))
    for arrow in scene.arrows:
        attrib = {"class": arrow.kind + (" bottleneck" if arrow.bottleneck else "")}
        group = ET.SubElement(root, "g", attrib=attrib)
        _title(group, arrow.title)
        if arrow.bottleneck:
            ET.SubElement(group, "path", d=_path(arrow), fill="none", stroke=BOTTLENECK,
                          attrib={"stroke-width": _num(arrow.width + 5), "stroke-opacity": "0.35"})  # fmt: skip
        line = {"stroke-width": _num(arrow.width), "stroke-linecap": "round", "stroke-opacity": "0.85"}
        if arrow.kind == "pipeline":
            line["stroke-dasharray"] = "5 4"
        ET.SubElement(group, "path", d=_path(arrow), fill="none", stroke=arrow.colour, attrib=line)
        points = " ".join(f"{_num(x)},{_num(y)}" for x, y in arrow.head)
        ET.SubElement(group, "polygon", points=points, fill=arrow.colour)
    legend = ET.SubElement(root, "g", attrib={"class": "legend"})
    for rect, swatch in scene.legend:
        _legend_swatch(legend, rect, swatch.colour, swatch.kind)
    for text in scene.legend_text:
        _text(legend, text)
    return root


def _legend_swatch(parent: ET.Element, r, colour: str, kind: str) -> None:
    if kind in ("line", "dashed"):
        y = _num(r.y + r.h / 2)
        attrib = {"stroke-width": "4" if kind == "line" else "1.5"}
        if kind == "dashed":
            attrib["stroke-dasharray"] = "5 4"
        ET.SubElement(parent, "line", x1=_num(r.x), y1=y, x2=_num(r.x + r.w), y2=y, stroke=colour, attrib=attrib)
        return
    fill, stroke = (colour, "#ffffff") if kind == "fill" else ("#ffffff", colour)
    ET.SubElement(parent, "rect", x=_num(r.x), y=_num(r.y), width=_num(r.w), height=_num(r.h), fill=fill,
                  stroke=stroke, attrib={"stroke-width": "3" if kind == "outline" else "1"})  # fmt: skip


def to_svg(scene: Scene) -> str:
    root = svg_element(scene)
    ET.indent(root)  # one element per line: a plan change shows as a readable diff
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def to_html(scene: Scene, plan: Plan, title: str) -> str:
    """One page: heading, the SVG inline, a table of replicas (stages in order) and one of KV routes."""
    svg = ET.tostring(svg_element(scene), encoding="unicode")
    rows = []
    for r in sorted(plan.replicas, key=lambda r: (r.role, r.id)):
        stages = "; ".join(
            f"S{k + 1}: {' '.join(s.gpus)} (layers {s.layers[0]}–{s.layers[1]})" for k, s in enumerate(r.stages)
        )
        cells = (scene.tags[r.id], r.id, r.role, f"TP{r.tp}×PP{r.pp}", stages, f"{r.capacity_rps:.3g}")
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    routes = [
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
            f"{scene.tags[x.source]} → {scene.tags[x.target]}", f"{x.rate_rps:.3g}", f"{x.capacity_rps:.3g}",
            f"{x.kv_gbps:.3g}")) + "</tr>"
        for x in sorted(plan.routes, key=lambda x: (x.source, x.target))
    ]  # fmt: skip
    head = "".join(f"<p>{html.escape(t.text)}</p>" for t in scene.heading[1:])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:" + FONT + ";margin:16px;color:#222}table{border-collapse:collapse;"
            "margin:12px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
            "svg{max-width:100%;height:auto}</style></head><body>",
            f"<h1>{html.escape(scene.heading[0].text)}</h1>{head}",
            svg,
            "<h2>Replicas</h2><table><tr><th>tag</th><th>id</th><th>role</th><th>layout</th><th>stages in order"
            "</th><th>capacity req/s</th></tr>",
            *rows,
            "</table><h2>KV routes</h2><table><tr><th>route</th><th>rate req/s</th><th>link capacity req/s</th>"
            "<th>KV Gbit/s</th></tr>",
            *routes,
            "</table></body></html>",
            "",
        ]
    )
