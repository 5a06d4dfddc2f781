"""All-reduce time over a TP group: measured (α, β) per (link, implementation, TP), not the ring formula.

t(bytes) = α(tp) + bytes / β(tp), with (α, β) per message-size band (rows' `min_bytes`: NCCL and
vLLM switch protocols with size, so one line does not fit 256 B … 1 GiB). Between measured TP sizes
α and 1/β are interpolated linearly in log2(tp); beyond them they scale as the ring algorithm does
from the nearest measured size (α ∝ tp − 1, 1/β ∝ (tp − 1)/tp). An engine uses the fastest
implementation it has (vLLM: its custom all-reduce or NCCL), so `implementation=None` takes the
minimum over the table's implementations. A link with a fallback calibration has β scaled by its
bandwidth ÷ the donor's. A link with no table at all (an inline or network link) keeps the ring
formula: 2(tp−1)·latency + 2(tp−1)/tp · bytes / bandwidth.

Physics: the fit bounds β ≤ link bandwidth · tp/(tp−1), so no all-reduce beats (tp−1)/tp · bytes /
bandwidth, which every GPU must at least send.
"""

from __future__ import annotations

import math
from itertools import pairwise

from planner.inputs.calibrations import AllreduceCalibration, AllreduceRow
from planner.inputs.catalog import LinkProfile

_COEFFS: dict[tuple[str, str, float, int], tuple[tuple[str, tuple[tuple[int, float, float], ...]], ...]] = {}


def ring_seconds(nbytes: float, tp: int, bandwidth: float, latency: float) -> float:
    """Ring all-reduce (α-β model with the link's catalogue figures): the v1 model, for uncalibrated links.
    TP 1 takes no steps, so costs 0."""
    steps = 2 * (tp - 1)
    return steps * latency + steps / tp * nbytes / bandwidth


def _interpolate(rows: list[AllreduceRow], tp: int) -> tuple[float, float]:
    """(α, 1/β) at tp from one implementation's rows sorted by tp (see module docstring)."""
    by_tp = {r.tp: (r.latency_s, 1.0 / r.bandwidth_bytes_per_s) for r in rows}
    if tp in by_tp:
        return by_tp[tp]
    sizes = sorted(by_tp)
    for low, high in pairwise(sizes):
        if low < tp < high:
            w = (math.log2(tp) - math.log2(low)) / (math.log2(high) - math.log2(low))
            (a0, i0), (a1, i1) = by_tp[low], by_tp[high]
            return a0 + w * (a1 - a0), i0 + w * (i1 - i0)
    near = sizes[0] if tp < sizes[0] else sizes[-1]
    alpha, inv_beta = by_tp[near]
    return alpha * (tp - 1) / (near - 1), inv_beta * ((tp - 1) / tp) / ((near - 1) / near)


def coefficients(table: AllreduceCalibration, tp: int) -> tuple[tuple[str, tuple[tuple[int, float, float], ...]], ...]:
    """(implementation, ((min_bytes, α, 1/β) per size band, ascending)) at tp; memoised."""
    key = (table.sha256, table.interconnect, table.bandwidth_scale, tp)
    hit = _COEFFS.get(key)
    if hit is None:
        by_band: dict[str, dict[int, list[AllreduceRow]]] = {}
        for row in table.table:
            by_band.setdefault(row.implementation, {}).setdefault(row.min_bytes, []).append(row)
        hit = tuple(
            (
                impl,
                tuple(
                    (band, alpha, inv_beta / table.bandwidth_scale)
                    for band, rows in sorted(bands.items())
                    for alpha, inv_beta in [_interpolate(rows, tp)]
                ),
            )
            for impl, bands in sorted(by_band.items())
        )
        _COEFFS[key] = hit
    return hit


def allreduce_seconds(link: LinkProfile, tp: int, nbytes: float, implementation: str | None = None) -> float:
    """One all-reduce of `nbytes` over tp GPUs joined by `link` (the fastest implementation unless named)."""
    if tp <= 1:
        return 0.0
    if link.allreduce is None:
        return ring_seconds(nbytes, tp, link.bandwidth, link.latency)
    best = math.inf
    for impl, bands in coefficients(link.allreduce, tp):
        if implementation is None or impl == implementation:
            _, alpha, inv_beta = next((b for b in reversed(bands) if b[0] <= nbytes), bands[0])
            best = min(best, alpha + nbytes * inv_beta)
    if best == math.inf:  # the table has no such implementation: the engine's choice stands in
        return allreduce_seconds(link, tp, nbytes)
    return best
