"""planner.costs.usage: which calibrations a set of replicas runs on (one entry per GPU type, one per intra-node link
a TP group all-reduces over), how a fallback or a prior is described, and which GPU types are not measured.

Why: plans record these so that `hexplan check` can tell when a calibration changed; a missing or extra entry makes
a plan stale for no reason or fresh when it is not.
"""

from __future__ import annotations

import dataclasses

import pytest
from builders import catalog, cluster, layout, node, toy_gpu

from planner.costs.usage import CalibrationUse, calibrations_used, describe, uncalibrated_gpu_types


def mixed_cluster():
    """A100-80G (calibrated, NVLink 3), L40 (fallback from L40S, PCIe 4), a toy GPU (catalogue priors)."""
    return cluster(
        node("a", "A100-80G", 2, interconnect="nvlink3"),
        node("l", "L40", 2, interconnect="pcie4"),
        node("t", toy_gpu(memory="80GB", link="pcie3"), 2),
    )


def test_each_gpu_type_once_and_each_tp_link_once_sorted():
    c = mixed_cluster()
    layers = c.model.layers
    uses = calibrations_used(c, [layout(layers, ["a/0", "a/1"]), layout(layers, ["a/0"]), layout(layers, ["l/0"])])
    a100, l40, nvlink3 = catalog().gpus["A100-80G"], catalog().gpus["L40"], catalog().links["nvlink3"]
    assert uses == [
        CalibrationUse("allreduce", "nvlink3", nvlink3.allreduce.id, nvlink3.allreduce.sha256, "calibrated"),
        CalibrationUse("gpu", "A100-80G", a100.calibration.id, a100.calibration.sha256, "calibrated"),
        CalibrationUse("gpu", "L40", l40.calibration.id, l40.calibration.sha256, "fallback", "L40S"),
    ]  # L40 at TP 1: its PCIe link's table is not used


def test_a_gpu_without_calibration_is_recorded_as_uncalibrated():
    c = mixed_cluster()
    uses = calibrations_used(c, [layout(c.model.layers, ["t/0"])])
    assert uses == [CalibrationUse("gpu", c.gpu_by_id["t/0"].gpu.key, "", "", "uncalibrated")]
    pcie3 = catalog().links["pcie3"].allreduce  # a fallback table (scaled from PCIe 4)
    tp2 = calibrations_used(c, [layout(c.model.layers, ["t/0", "t/1"])])
    assert CalibrationUse("allreduce", "pcie3", pcie3.id, pcie3.sha256, "fallback", "pcie4") in tp2


def test_descriptions_name_what_is_borrowed_or_assumed():
    assert describe(CalibrationUse("gpu", "L40", "x", "y", "fallback", "L40S")) == "L40 (fallback from L40S)"
    assert describe(CalibrationUse("gpu", "MyGPU", "", "", "uncalibrated")) == "MyGPU (uncalibrated: catalogue priors)"
    assert describe(CalibrationUse("allreduce", "eth", "", "", "uncalibrated")) == "eth (uncalibrated: ring formula)"


def test_uncalibrated_gpu_types_are_listed_once_by_name():
    c = mixed_cluster()
    toy = c.gpu_by_id["t/0"].gpu.key
    assert uncalibrated_gpu_types(c) == sorted(
        ["L40 (fallback from L40S)", f"{toy} (uncalibrated: catalogue priors)"], key=lambda d: d.split(" ")[0]
    )
    two_l40 = cluster(node("l", "L40", 1), node("m", "L40", 1), node("a", "A100-80G", 1))
    assert uncalibrated_gpu_types(two_l40) == ["L40 (fallback from L40S)"]


def test_uses_are_frozen_and_ordered():
    use = CalibrationUse("gpu", "L40", "x", "y", "fallback", "L40S")
    with pytest.raises(dataclasses.FrozenInstanceError):
        use.key = "A100-80G"  # type: ignore[misc]
    assert use < CalibrationUse("gpu", "L40S", "", "", "calibrated")
