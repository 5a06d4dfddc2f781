"""Plots: `hexplan compare --plot` and the Pareto-frontier plot, decoded and checked; the frontier rule
against a brute-force oracle."""

from __future__ import annotations

import json
import random

import matplotlib.image
import numpy as np
import pytest
from conftest import EXAMPLES

from planner.errors import InputError
from planner.outputs.plots import FADED, OTHERS, OURS, compare_plot, frontier, pareto_plot, read_pareto

ROWS = [
    {"planner": "hexgen2", "goodput_rps": 12.0, "output_tokens_per_usd": 2.0e6},
    {"planner": "distserve", "goodput_rps": 8.0, "output_tokens_per_usd": 1.5e6},
    {"planner": "vllm", "infeasible": "no group holds the model"},
]
POINTS = [
    {"ttft_s": 0.5, "tpot_s": 0.04, "attainment": 0.95, "goodput_rps": 3.0, "usd_per_hour": 20.0, "plan": "a.yaml"},
    {"ttft_s": 1.0, "tpot_s": 0.06, "attainment": 0.92, "goodput_rps": 5.0, "usd_per_hour": 26.0},
    {"ttft_s": 2.0, "tpot_s": 0.10, "attainment": 0.90, "goodput_rps": 7.5, "usd_per_hour": 26.0},
    {"ttft_s": 2.0, "tpot_s": 0.12, "attainment": 0.90, "goodput_rps": 6.0, "usd_per_hour": 30.0},  # dominated
]


def has_colour(image: np.ndarray, colour: str) -> bool:
    want = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return bool(np.any(np.all(np.abs(np.round(image[..., :3] * 255) - want) <= 2, axis=-1)))


def decode(png: bytes, tmp_path) -> np.ndarray:
    path = tmp_path / "plot.png"
    path.write_bytes(png)
    return matplotlib.image.imread(path)


def test_compare_plot_has_ours_and_the_others(tmp_path) -> None:
    image = decode(compare_plot(ROWS, "c.yaml"), tmp_path)
    assert image.shape[:2] == (630, 1500)  # 10 × 4.2 inches at 150 dpi
    assert has_colour(image, OURS) and has_colour(image, OTHERS)


def test_compare_cli_writes_the_plot(run_cli, tmp_path) -> None:
    out = tmp_path / "compare.png"
    args = ("compare", EXAMPLES / "tiny.yaml", "--baselines", "vllm", "--time-limit", "3", "--duration", "20")
    result = run_cli(*args, "--plot", out)
    assert result.exit_code == 0, result.output
    assert has_colour(decode(out.read_bytes(), tmp_path), OURS)
    refused = run_cli(*args, "--plot", tmp_path / "compare.svg")
    assert refused.exit_code == 2 and "expected a file ending in .png" in refused.stderr
    assert not (tmp_path / "compare.svg").exists()


def dominated(points: list[tuple[float, float]], i: int) -> bool:
    x, y = points[i]
    return any((a <= x and b >= y) and (a < x or b > y) for j, (a, b) in enumerate(points) if j != i)


@pytest.mark.parametrize("seed", range(20))
def test_the_frontier_keeps_exactly_the_undominated_points(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.choice(range(6)), rng.choice(range(6))) for _ in range(rng.randint(1, 12))]
    kept = frontier(points)
    distinct = {points[i] for i in kept}
    assert distinct == {p for i, p in enumerate(points) if not dominated(points, i)}
    assert len(kept) == len(distinct)  # one point per duplicate position
    assert [points[i][0] for i in kept] == sorted(points[i][0] for i in kept)


def test_pareto_plot_draws_the_frontier_and_fades_the_rest(tmp_path) -> None:
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps({"points": POINTS}))
    points = read_pareto(path)
    assert points[0].model_extra == {"plan": "a.yaml"}
    image = decode(pareto_plot(points, "frontier"), tmp_path)
    assert has_colour(image, OURS) and has_colour(image, FADED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "expected a non-empty list of points"),
        ('{"points": 3}', "expected a non-empty list of points"),
        (json.dumps([POINTS[0], {**POINTS[1], "attainment": 2}]), "points[1]: attainment: Input should be less"),
        (json.dumps([{"ttft_s": 1}]), "points[0]: tpot_s: Field required"),
    ],
)
def test_a_bad_frontier_file_is_named(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_pareto(path)
    assert str(path) in caught.value.message and message in caught.value.message
