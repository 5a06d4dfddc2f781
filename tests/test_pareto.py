"""`hexplan solve --pareto` (issue 12, point 6): goodput over a grid of SLOs, the frontier, a stable JSON."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import EXAMPLES

from planner.outputs.plots import OURS

KEYS = {
    "ttft_s", "tpot_s", "attainment", "goodput_rps", "usd_per_hour", "throughput_rps", "gpus_used", "replicas",
    "bottleneck", "frontier", "simulated_goodput_rps", "infeasible",
}  # fmt: skip


def _dominates(p: dict, q: dict) -> bool:
    mine, theirs = (p["ttft_s"], p["tpot_s"], -p["goodput_rps"]), (q["ttft_s"], q["tpot_s"], -q["goodput_rps"])
    return all(a <= b for a, b in zip(mine, theirs, strict=True)) and mine != theirs


def test_pareto_json_is_the_grid_with_its_frontier(run_cli):
    result = run_cli(
        "solve", EXAMPLES / "slo-tight.yaml", "--pareto", "--pareto-ttft", "150ms,2s", "--pareto-tpot", "18ms,100ms",
        "--no-verify", "--time-limit", "10", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)
    grid = [(p["ttft_s"], p["tpot_s"]) for p in points]
    assert grid == [pytest.approx(g) for g in [(0.15, 0.018), (0.15, 0.1), (2.0, 0.018), (2.0, 0.1)]]
    for p in points:
        assert set(p) == KEYS and p["attainment"] == 0.9
        assert p["infeasible"] is None and 0 < p["goodput_rps"] <= p["throughput_rps"]
        assert p["simulated_goodput_rps"] is None  # --no-verify
    for p in points:  # the frontier is exactly the non-dominated points
        assert p["frontier"] == (not any(_dominates(q, p) for q in points))
    assert any(p["frontier"] for p in points)
    tight, loose = points[0], points[-1]
    assert tight["replicas"].keys() == {"prefill", "decode"} and loose["replicas"].keys() == {"colocated"}
    assert loose["goodput_rps"] > tight["goodput_rps"]


def test_pareto_table_marks_the_frontier(run_cli):
    result = run_cli(
        "solve", EXAMPLES / "slo-tight.yaml", "--pareto", "--pareto-ttft", "2s", "--pareto-tpot", "100ms",
        "--no-verify", "--time-limit", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "goodput over TTFT × TPOT SLOs" in result.stdout and "●" in result.stdout


def test_pareto_plot_writes_the_frontier_png(run_cli, tmp_path):
    import matplotlib.image

    out = tmp_path / "frontier.png"
    grid = ("--pareto-ttft", "150ms,2s", "--pareto-tpot", "100ms")
    args = ("solve", EXAMPLES / "slo-tight.yaml", "--pareto", *grid, "--no-verify", "--time-limit", "5", "--json")
    result = run_cli(*args, "--plot", out)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2  # the JSON still goes to stdout
    image = matplotlib.image.imread(out)
    ours = np.array([int(OURS[i : i + 2], 16) for i in (1, 3, 5)])
    assert np.any(np.all(np.abs(np.round(image[..., :3] * 255) - ours) <= 2, axis=-1))  # the frontier's colour


def test_pareto_plot_is_refused_before_any_solving(run_cli, tmp_path, monkeypatch):
    base = ("solve", EXAMPLES / "slo-tight.yaml", "--time-limit", "5")
    alone = run_cli(*base, "--plot", tmp_path / "a.png")
    assert alone.exit_code == 2 and "give --pareto too" in alone.stderr
    svg = run_cli(*base, "--pareto", "--plot", tmp_path / "a.svg")
    assert svg.exit_code == 2 and "expected a file ending in .png" in svg.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # the `plot` extra not installed
    missing = run_cli(*base, "--pareto", "--plot", tmp_path / "a.png")
    assert missing.exit_code == 2 and "hexgen2[plot]" in missing.stderr and "Traceback" not in missing.stderr
    assert not any(tmp_path.iterdir())
