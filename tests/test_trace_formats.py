"""Trace formats: the Azure CSV (2023 and 2024 layouts) and Mooncake JSON Lines, told apart in one place.

The synthetic fixtures hold the same requests in both formats (scripts/synthetic_traces.py), so the two
readers are each other's oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import EXAMPLES

from planner.errors import InputError
from planner.inputs.cluster import load_cluster
from planner.inputs.workload import Workload, read_trace, trace_format

SYNTHETIC = EXAMPLES / "traces" / "synthetic"
AZURE_2024 = SYNTHETIC / "azure2024-format.csv"
MOONCAKE = SYNTHETIC / "mooncake-format.jsonl"


def test_both_formats_of_the_same_requests_read_the_same() -> None:
    azure, mooncake = read_trace(AZURE_2024), read_trace(MOONCAKE)
    assert len(azure.prompt) == len(mooncake.prompt) == 240
    assert np.array_equal(azure.prompt, mooncake.prompt) and np.array_equal(azure.output, mooncake.output)
    # Mooncake keeps whole milliseconds, the CSV microseconds: gaps agree within 1 ms.
    assert np.max(np.abs(azure.arrival_s - mooncake.arrival_s)) < 1e-3
    assert azure.arrival_s[0] == 0 and np.all(np.diff(azure.arrival_s) >= 0)


def test_format_is_decided_by_suffix_or_first_character(tmp_path: Path) -> None:
    assert trace_format(MOONCAKE, MOONCAKE.read_text()) == "mooncake"
    assert trace_format(AZURE_2024, AZURE_2024.read_text()) == "azure"
    unnamed = tmp_path / "trace.txt"
    unnamed.write_text('\n  {"timestamp": 5, "input_length": 10, "output_length": 2}\n')
    assert trace_format(unnamed, unnamed.read_text()) == "mooncake"
    assert read_trace(unnamed).prompt.tolist() == [10]


def test_mooncake_arrivals_are_sorted_and_start_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [(3000, 7, 1), (1000, 5, 2), (1000, 6, 3), (2500.5, 8, 4)]
    path.write_text("".join(f'{{"timestamp": {t}, "input_length": {p}, "output_length": {o}}}\n' for t, p, o in lines))
    trace = read_trace(path)
    assert trace.arrival_s.tolist() == pytest.approx([0.0, 0.0, 1.5005, 2.0])
    assert trace.prompt.tolist() == [5, 6, 8, 7]  # equal times keep file order


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "line 2: not a JSON object"),
        ('{"timestamp": 1, "input_length": 3}', "line 2: expected a JSON object with timestamp, input_length"),
        ("[1, 2, 3]", "line 2: expected a JSON object with timestamp"),
        ('{"timestamp": -1, "input_length": 3, "output_length": 1}', "line 2: timestamp must be milliseconds ≥ 0"),
        ('{"timestamp": "now", "input_length": 3, "output_length": 1}', "timestamp must be milliseconds ≥ 0"),
        ('{"timestamp": 1, "input_length": 0, "output_length": 1}', "line 2: input_length must be a positive integer"),
        ('{"timestamp": 1, "input_length": 3, "output_length": 1.5}', "output_length must be a positive integer"),
        ('{"timestamp": 1, "input_length": true, "output_length": 1}', "input_length must be a positive integer"),
    ],
)
def test_bad_mooncake_lines_name_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 3, "output_length": 1}\n' + line + "\n")
    with pytest.raises(InputError) as caught:
        read_trace(path)
    assert str(path) in caught.value.message and message in caught.value.message


def test_an_empty_jsonl_trace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(InputError, match="has no requests"):
        read_trace(path)


def test_a_cluster_file_may_name_a_mooncake_trace(tmp_path: Path, catalog) -> None:
    spec = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text())
    spec["workload"] = {"trace": str(MOONCAKE)}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(spec))
    cluster = load_cluster(tmp_path / "cluster.yaml", catalog)
    expected = Workload.from_trace(AZURE_2024)
    assert cluster.workload.prompt.mean == pytest.approx(expected.prompt.mean)
    assert cluster.workload.output.mean == pytest.approx(expected.output.mean)


def test_simulate_replays_either_format(run_cli, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    solved = run_cli("solve", EXAMPLES / "tiny.yaml", "-o", plan, "-q", "--time-limit", "20", "--no-verify")
    assert solved.exit_code == 0
    runs = [run_cli("simulate", plan, "--trace", trace, "--json") for trace in (AZURE_2024, MOONCAKE)]
    assert [r.exit_code for r in runs] == [0, 0], [r.output for r in runs]
    arrived = [yaml.safe_load(r.stdout)["arrived"] for r in runs]
    assert arrived == [240, 240]
