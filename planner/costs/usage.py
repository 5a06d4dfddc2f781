"""Which calibrations a set of replicas runs on, and which GPU types run on fallbacks or priors.

Why here: plans record the calibrations their figures came from (so `hexplan check` can tell when one
changed), and `validate`, plan summaries and `predict` name GPU types whose figures are not measured;
all of them ask the same question of the cost model's inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planner.costs.layout import Layout
from planner.inputs.problem import Cluster


@dataclass(frozen=True, order=True)
class CalibrationUse:
    """kind 'gpu' (key: GPU type) or 'allreduce' (key: link); status calibrated | fallback | uncalibrated."""

    kind: str
    key: str
    id: str
    sha256: str
    status: str
    borrowed_from: str = ""


def calibrations_used(cluster: Cluster, layouts: Iterable[Layout]) -> list[CalibrationUse]:
    """One entry per GPU type in the layouts, and per intra-node link a TP group (tp > 1) all-reduces over."""
    uses: set[CalibrationUse] = set()
    for layout in layouts:
        for stage in layout.stages:
            slot = cluster.gpu_by_id[stage.gpus[0]]
            cal = slot.gpu.calibration
            uses.add(
                CalibrationUse("gpu", slot.gpu.key, cal.id, cal.sha256, cal.status, cal.borrowed_from)
                if cal
                else CalibrationUse("gpu", slot.gpu.key, "", "", "uncalibrated")
            )
            if stage.tp > 1:
                link = cluster.node_by_name[slot.node].intra_link
                table = link.allreduce
                uses.add(
                    CalibrationUse("allreduce", link.key, table.id, table.sha256, table.status, table.borrowed_from)
                    if table
                    else CalibrationUse("allreduce", link.key, "", "", "uncalibrated")
                )
    return sorted(uses)


def describe(use: CalibrationUse) -> str:
    """'L40 (fallback from L40S)' or 'MyGPU (uncalibrated: catalogue priors)'."""
    if use.status == "fallback":
        return f"{use.key} (fallback from {use.borrowed_from})"
    return f"{use.key} (uncalibrated: {'catalogue priors' if use.kind == 'gpu' else 'ring formula'})"


def uncalibrated_gpu_types(cluster: Cluster) -> list[str]:
    """The cluster's GPU types whose factors are not their own measurements, described."""
    seen: dict[str, str] = {}
    for node in cluster.nodes:
        cal = node.gpu.calibration
        if cal is None or cal.status != "calibrated":
            use = CalibrationUse("gpu", node.gpu.key, "", "", cal.status if cal else "uncalibrated",
                                 cal.borrowed_from if cal else "")  # fmt: skip
            seen[node.gpu.key] = describe(use)
    return [seen[k] for k in sorted(seen)]
