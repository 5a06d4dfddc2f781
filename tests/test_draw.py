"""`hexplan draw`: the SVG, HTML and PNG are read back and checked against the plan they show.

SVG: parsed with xml.etree (one cell per GPU, coloured and labelled by its replica and stage, one arrow
per KV route and pipeline hop, the bottleneck marked). HTML: parsed with html.parser (self-contained,
the SVG inline, a row per replica and route). PNG: decoded with matplotlib (size, and the colour under
each replica's cells). Where Chromium is installed a slow test renders the HTML headless.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import EXAMPLES

from planner.inputs.cluster import load_cluster
from planner.outputs.kvload import kv_loads, saturated_replicas
from planner.outputs.scene import build_scene, replica_tags, utilisation_colour
from planner.outputs.svg import to_html, to_svg
from planner.plans.schema import read_plan, write_plan

NS = {"s": "http://www.w3.org/2000/svg"}


@pytest.fixture(scope="module")
def hetero(tmp_path_factory, catalog):
    """paper-hetero-1 solved: a 4-stage prefill pipeline over two nodes and two decode replicas."""
    folder = tmp_path_factory.mktemp("draw")
    plan_file = folder / "plan.yaml"
    import planner
    from planner.cli import main  # noqa: F401  (the CLI is what users run; solve through the API here)

    cluster = load_cluster(EXAMPLES / "paper-hetero-1.yaml", catalog)
    write_plan(planner.solve(cluster, time_limit=30, roles="disaggregated"), plan_file)  # HexGen-2 roles
    return read_plan(plan_file), cluster, plan_file


@pytest.fixture(scope="module")
def kv_bound(tmp_path_factory, catalog, hand_plan, hand_replica):
    """tiny.yaml with a 1 Gbit/s network: one L40 prefill feeding one A100 decode is KV-transfer bound."""
    spec = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    spec["network"] = {"default": {"bandwidth": "1Gbps", "latency": "10us"}}
    path = tmp_path_factory.mktemp("kv") / "slow.yaml"
    path.write_text(yaml.safe_dump(spec))
    cluster = load_cluster(path, catalog)
    prefill = hand_replica(cluster, "prefill", ["l40-0/0"])
    return hand_plan(cluster, prefill, hand_replica(cluster, "decode", ["a100-0/0"])), cluster


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text.encode())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if kind in g.get("class", "").split()]


def test_every_gpu_is_a_cell_labelled_with_its_replica_and_stage(hetero) -> None:
    plan, cluster, _ = hetero
    root = parse_svg(to_svg(build_scene(plan, cluster, "plan.yaml")))
    cells = {g.get("data-gpu"): g for g in groups(root, "gpu")}
    assert set(cells) == {gpu.id for gpu in cluster.gpus}
    tags = replica_tags(plan)
    served = {g: (r, k) for r in plan.replicas for k, s in enumerate(r.stages) for g in s.gpus}
    for gpu, cell in cells.items():
        texts = [t.text for t in cell.iter("{http://www.w3.org/2000/svg}text")]
        if gpu not in served:
            assert cell.get("data-replica") is None and texts[-1] == "idle"
            continue
        replica, k = served[gpu]
        first, end = replica.stages[k].layers
        assert cell.get("data-replica") == replica.id and texts[0] == tags[replica.id]
        assert texts[1] == (f"S{k + 1} {first}–{end}" if replica.pp > 1 else f"L {first}–{end}")
        assert replica.id in cell.find("s:title", NS).text
    # one pipeline arrow per consecutive stage pair, one KV arrow per route carrying traffic
    assert len(groups(root, "pipeline")) == sum(r.pp - 1 for r in plan.replicas)
    assert len(groups(root, "kv")) == sum(1 for r in plan.routes if r.rate_rps > 0)
    assert groups(root, "legend") and root.get("width") and root.get("viewBox")


def test_replica_colours_follow_the_role(hetero) -> None:
    plan, cluster, _ = hetero
    scene = build_scene(plan, cluster, "plan.yaml")
    role = {r.id: r.role for r in plan.replicas}
    families = {"prefill": "#1f77b4", "decode": "#ff7f0e"}
    for cell in scene.cells:
        if cell.replica is not None:
            same_role = [c.fill for c in scene.cells if c.replica and role[c.replica] == role[cell.replica]]
            assert families[role[cell.replica]] in same_role  # the role's first shade is used
            assert all(c.fill == cell.fill for c in scene.cells if c.replica == cell.replica)


def test_the_bottleneck_replicas_are_outlined(hetero) -> None:
    plan, cluster, _ = hetero
    root = parse_svg(to_svg(build_scene(plan, cluster, "plan.yaml")))
    marked = {g.get("data-replica") for g in groups(root, "bottleneck") if "gpu" in g.get("class")}
    role = plan.summary.bottleneck
    expected = {r.id for r in plan.replicas if r.role == role} & saturated_replicas(plan)
    assert role in ("prefill", "decode") and marked == expected and expected


def test_kv_bound_plan_marks_the_saturated_route_and_computes_link_load(kv_bound) -> None:
    plan, cluster = kv_bound
    assert plan.summary.bottleneck == "kv_transfer"
    (route,) = plan.routes
    loads = kv_loads(plan, cluster)
    link = cluster.link("a100-0", "l40-0").bandwidth
    # independent oracle: the plan's own KV traffic figure over the 1 Gbit/s link
    assert loads.routes[0].utilisation == pytest.approx(route.kv_gbps * 1e9 / 8 / link, rel=1e-6)
    assert loads.routes[0].utilisation == pytest.approx(1.0, rel=1e-6)
    nic_out = next(u for h, u in loads.hops.items() if h.kind == "nic-out")
    assert nic_out == pytest.approx(route.kv_gbps * 1e9 / 8 / cluster.node_by_name["l40-0"].nic, rel=1e-6)
    root = parse_svg(to_svg(build_scene(plan, cluster, "slow")))
    (arrow,) = groups(root, "kv")
    assert (
        "bottleneck" in arrow.get("class") and "network link l40-0 → a100-0 at 100%" in arrow.find("s:title", NS).text
    )
    assert utilisation_colour(1.0) in {p.get("stroke") for p in arrow.iter("{http://www.w3.org/2000/svg}path")}


def test_the_same_plan_draws_the_same_bytes(hetero) -> None:
    plan, cluster, _ = hetero
    assert to_svg(build_scene(plan, cluster, "a")) == to_svg(build_scene(plan, cluster, "a"))


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        self.rows += tag == "tr"
        self.external += [v for k, v in attrs if k in ("src", "href") and v]


def test_the_html_page_is_self_contained(hetero, run_cli, tmp_path) -> None:
    plan, _, plan_file = hetero
    out = tmp_path / "plan.html"
    result = run_cli("draw", plan_file, "-o", out, "--cluster", EXAMPLES / "paper-hetero-1.yaml")
    assert result.exit_code == 0, result.output
    page = Page()
    page.feed(out.read_text())
    assert {"html", "svg", "table", "script"} & set(page.tags) == {"html", "svg", "table"}
    assert page.external == [] and "<link" not in out.read_text()
    assert page.rows == 2 + len(plan.replicas) + len(plan.routes)  # two header rows
    svg = out.read_text().split("<svg", 1)[1].split("</svg>", 1)[0]
    parse_svg("<svg" + svg + "</svg>")


def test_the_png_is_the_same_picture(hetero, run_cli, tmp_path) -> None:
    import matplotlib.image

    plan, cluster, plan_file = hetero
    out = tmp_path / "plan.png"
    assert run_cli("draw", plan_file, "-o", out, "--cluster", EXAMPLES / "paper-hetero-1.yaml").exit_code == 0
    image = matplotlib.image.imread(out)
    scene = build_scene(plan, cluster, plan_file.name)
    assert image.shape[:2] == (round(scene.height * 2), round(scene.width * 2))
    for cell in scene.cells:  # the commonest colour inside each cell (text and arrows are thin) is its fill
        r = cell.rect
        inner = image[
            round((r.y + 4) * 2) : round((r.y + r.h - 4) * 2), round((r.x + 4) * 2) : round((r.x + r.w - 4) * 2), :3
        ]
        colours, counts = np.unique(np.round(inner.reshape(-1, 3) * 255).astype(int), axis=0, return_counts=True)
        want = [int(cell.fill[i : i + 2], 16) for i in (1, 3, 5)]
        assert np.abs(colours[np.argmax(counts)] - want).max() <= 3, (cell.gpu, colours[np.argmax(counts)], cell.fill)


def test_draw_refuses_an_unknown_format_and_writes_nothing(hetero, run_cli, tmp_path) -> None:
    _, _, plan_file = hetero
    result = run_cli("draw", plan_file, "-o", tmp_path / "plan.pdf")
    assert result.exit_code == 2 and "expected a file ending in .svg, .png, .html" in result.stderr
    assert not (tmp_path / "plan.pdf").exists()


def test_the_readme_picture_is_a_current_drawing() -> None:
    root = parse_svg((Path(__file__).resolve().parent.parent / "docs" / "plan.svg").read_text())
    assert groups(root, "gpu") and groups(root, "kv") and groups(root, "legend")


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_chromium_renders_the_html(hetero, tmp_path) -> None:
    import matplotlib.image

    plan, cluster, _ = hetero
    page = tmp_path / "plan.html"
    page.write_text(to_html(build_scene(plan, cluster, "plan.yaml"), plan, "plan"))
    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
               "--window-size=1200,900", page.as_uri()]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=True)
    image = matplotlib.image.imread(shot)[..., :3]
    prefill_blue = np.array([0x1F, 0x77, 0xB4]) / 255
    assert image.shape[:2] == (900, 1200)
    assert np.any(np.all(np.abs(image - prefill_blue) < 0.03, axis=-1))  # the SVG's cells were painted
