"""Trace CSVs (planner.workload.read_trace): bounds, time zones, csv limits (issue 9 item 2).

Every refusal is an InputError naming the file and the line; accepted timestamps are normalised
to UTC (naive ones are UTC), so inter-arrival gaps never depend on the machine's time zone.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from planner.errors import InputError
from planner.inputs.workload import MAX_TOKENS, read_trace

ROOT = Path(__file__).resolve().parent.parent
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def trace(tmp_path, *rows: str):
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "".join(f"{r}\n" for r in rows))
    return path


def refused(path, fragment: str) -> str:
    with pytest.raises(InputError) as info:
        read_trace(path)
    assert info.value.message.startswith(f"{path}: "), info.value.message
    assert fragment in info.value.message, info.value.message
    return info.value.message


@pytest.mark.parametrize("column", [1, 2])
def test_token_counts_beyond_the_bound_name_the_row(tmp_path, column):
    row = ["2023-11-16 18:15:46", "10", "5"]
    row[column] = str(MAX_TOKENS + 1)
    path = trace(tmp_path, "2023-11-16 18:15:45,10,5", ",".join(row))
    name = ("ContextTokens", "GeneratedTokens")[column - 1]
    refused(path, f"line 3: {name} {MAX_TOKENS + 1:,} is more than {MAX_TOKENS:,} tokens per request")
    assert read_trace(trace(tmp_path, f"2023-11-16 18:15:45,{MAX_TOKENS},5")).prompt[0] == MAX_TOKENS


def test_huge_integer_text_is_refused(tmp_path):
    refused(trace(tmp_path, "2023-11-16 18:15:45," + "9" * 5000 + ",5"), "line 2:")


def test_a_field_over_the_csv_limit_is_an_input_error(tmp_path):
    path = trace(tmp_path, "2023-11-16 18:15:45,10,5", "9" * (csv.field_size_limit() + 10) + ",1,1")
    refused(path, "line 3: field larger than field limit")


def test_unbalanced_quote_is_an_input_error(tmp_path):
    path = trace(tmp_path, '"2023-11-16 18:15:45,10,5', *["2023-11-16 18:15:46,10,5"] * 3)
    with pytest.raises(InputError, match=str(path)):
        read_trace(path)


def test_offsets_are_normalised_to_utc(tmp_path):
    path = trace(
        tmp_path,
        "2023-11-16T20:00:00+02:00,10,5",  # 18:00:00 UTC
        "2023-11-16 18:00:01.5Z,10,5",
        "2023-11-16 13:00:03.2500000-05:00,10,5",  # 18:00:03.25 UTC, 7 fractional digits
    )
    assert np.allclose(read_trace(path).arrival_s, [0.0, 1.5, 3.25])


def test_naive_timestamps_are_utc(tmp_path):
    path = trace(tmp_path, "2023-03-26 00:59:59,10,5", "2023-03-26 03:00:01,10,5")  # across a DST change in Europe
    assert np.allclose(read_trace(path).arrival_s, [0.0, 7202.0])


def test_mixing_naive_and_offset_timestamps_names_the_row(tmp_path):
    path = trace(tmp_path, "2023-11-16 18:00:00,10,5", "2023-11-16 18:00:01,10,5", "2023-11-16 18:00:02+00:00,10,5")
    refused(path, "line 4: timestamp '2023-11-16 18:00:02+00:00' has a UTC offset but line 2's has none")


@pytest.mark.parametrize(
    "stamp", ["18:15:46", "2023/11/16 18:15:46", "1700000000", "2023-11-16 18:15:46 PST", "0001-01-01 00:00:00+14:00"]
)
def test_other_timestamp_formats_are_refused_with_the_row(tmp_path, stamp):
    refused(trace(tmp_path, "2023-11-16 18:00:00,10,5", f"{stamp},10,5"), "line 3: ")


@pytest.mark.parametrize("text", [HEADER, "", HEADER + "\n\n"])
def test_an_empty_trace_is_refused(tmp_path, text):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=str(path)):
        read_trace(path)


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        (f"2023-11-16 18:15:46,{10**8},5", "line 3: ContextTokens 100,000,000 is more than"),
        ("9" * 200_000 + ",1,1", "line 3: field larger than field limit"),
        ("2023-11-16 18:15:46+01:00,10,5", "line 3: timestamp"),
    ],
)
def test_cli_trace_errors_exit_2_naming_file_and_row(run_cli, tmp_path, solved_plan, row, fragment):
    plan = solved_plan(ROOT / "examples" / "tiny.yaml", "--time-limit", "5")
    path = trace(tmp_path, "2023-11-16 18:15:45,10,5", row)
    result = run_cli("simulate", plan, "--trace", path)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {path}: {fragment}"), result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "workload",
    [
        {"prompt_tokens": MAX_TOKENS + 1, "output_tokens": 10},
        {"prompt_tokens": 10, "output_tokens": {"distribution": "exponential", "mean": 1e12}},
        {"prompt_tokens": {"distribution": "uniform", "low": 1, "high": 1e300}, "output_tokens": 10},
    ],
)
def test_cluster_workloads_share_the_token_bound(run_cli, tmp_path, workload):
    cluster = yaml.safe_load((ROOT / "examples" / "tiny.yaml").read_text()) | {"workload": workload}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    result = run_cli("validate", path)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {path}: workload"), result.output
    assert "10,000,000" in result.stderr or "10000000" in result.stderr
