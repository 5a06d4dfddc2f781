"""`hexplan compare`: ours and each requested baseline planned, simulated and put side by side."""

from __future__ import annotations

import json

import pytest
from conftest import EXAMPLES


def test_compare_lists_ours_and_each_baseline_with_ratios(run_cli):
    result = run_cli(
        "compare", EXAMPLES / "tiny.yaml", "--baselines", "vllm", "--time-limit", "3", "--duration", "60", "--json"
    )
    assert result.exit_code == 0, result.output
    rows = {row["planner"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"hexgen2", "vllm"}
    ours, vllm = rows["hexgen2"], rows["vllm"]
    assert ours["ours_over_this"] == 1.0
    assert vllm["ours_over_this"] == pytest.approx(ours["throughput_rps"] / vllm["throughput_rps"])
    for row in rows.values():
        assert row["throughput_rps"] > 0 and row["goodput_rps"] > 0
        assert row["cost_per_hour_usd"] == pytest.approx(18.576)  # tiny.yaml's GPUs, all used


def test_compare_rejects_an_unknown_baseline(run_cli):
    result = run_cli("compare", EXAMPLES / "tiny.yaml", "--baselines", "orca")
    assert result.exit_code == 2
    assert "orca" in result.stderr and "Traceback" not in result.output
