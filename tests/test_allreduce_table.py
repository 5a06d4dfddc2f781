"""costs.allreduce's measured table between and beyond its TP sizes, by hand: log2-linear interpolation of α and
1/β between measured sizes, ring scaling from the nearest one outside them (α ∝ tp − 1, 1/β ∝ (tp − 1)/tp)."""

from __future__ import annotations

import math

import pytest

from planner.costs.allreduce import _interpolate
from planner.inputs.calibrations import AllreduceRow


def rows(*sizes: int) -> list[AllreduceRow]:
    """α = 10 µs · tp, β = 100 GB/s ÷ tp at each measured size."""
    return [
        AllreduceRow(implementation="nccl", tp=tp, latency_s=1e-5 * tp, bandwidth_bytes_per_s=1e11 / tp) for tp in sizes
    ]


def test_a_measured_size_is_taken_as_measured() -> None:
    assert _interpolate(rows(2, 8), 8) == (pytest.approx(8e-5), pytest.approx(8 / 1e11))


def test_between_measured_sizes_alpha_and_inverse_beta_are_linear_in_log2_tp() -> None:
    """Table at 2 and 8: tp 4 is halfway in log2, so α = (20 + 80)/2 µs and 1/β = (2 + 8)/2 / 1e11."""
    alpha, inv_beta = _interpolate(rows(2, 8), 4)
    assert alpha == pytest.approx(5e-5) and inv_beta == pytest.approx(5 / 1e11)
    w = (math.log2(3) - 1) / 2
    alpha3, _ = _interpolate(rows(2, 8), 3)
    assert alpha3 == pytest.approx(2e-5 + w * 6e-5)


def test_beyond_the_table_the_ring_algorithm_scales_from_the_nearest_size() -> None:
    """Above: tp 16 from 8; below: tp 2 from 4."""
    alpha, inv_beta = _interpolate(rows(4, 8), 16)
    assert alpha == pytest.approx(8e-5 * 15 / 7)
    assert inv_beta == pytest.approx(8 / 1e11 * (15 / 16) / (7 / 8))
    alpha, inv_beta = _interpolate(rows(4, 8), 2)
    assert alpha == pytest.approx(4e-5 * 1 / 3)
    assert inv_beta == pytest.approx(4 / 1e11 * (1 / 2) / (3 / 4))
