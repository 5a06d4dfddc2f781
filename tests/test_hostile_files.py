"""Non-regular files and oversize files wherever a command reads one (issue 9 item 4).

A FIFO, /dev/zero, a directory, a symlink loop, a file over the size cap: given on the command
line or named inside a plan (cluster.file) or a cluster file (workload.trace, model: x.json), each
must exit 2 within a second with a message on stderr naming the file, never block or read forever.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from fuzz.cases import SPECIALS as KINDS
from fuzz.cases import make_special as hostile

from planner.errors import InputError
from planner.yamlio import MAX_FILE_BYTES, read_bytes

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny.yaml"
EXPECTED = {
    "fifo": "is a FIFO (named pipe), not a regular file",
    "devzero": "is a character device, not a regular file",
    "dir": "is a directory, not a regular file",
    "loop": "cannot read",
    "huge": f"at most {MAX_FILE_BYTES:,} bytes are read",
    "missing": "no such file",
}


@pytest.mark.parametrize("kind", KINDS)
def test_read_bytes_refuses_without_blocking(tmp_path, kind):
    path = hostile(tmp_path / "x.yaml", kind)
    began = time.monotonic()
    with pytest.raises(InputError) as info:
        read_bytes(path, what="cluster file")
    assert time.monotonic() - began < 1.0
    assert str(path) in info.value.message and EXPECTED[kind] in info.value.message, info.value.message


def test_read_bytes_caps_a_growing_or_sizeless_file(tmp_path):
    """/proc-style files report size 0; the cap holds on what is read, not only on st_size."""
    path = tmp_path / "small.yaml"
    path.write_bytes(b"x" * 100)
    assert read_bytes(path, what="file", limit=100) == b"x" * 100
    with pytest.raises(InputError, match="at most 99 bytes"):
        read_bytes(path, what="file", limit=99)


def test_odd_paths_are_input_errors(tmp_path):
    for path in (Path("a\x00b"), tmp_path / ("x" * 5000), tmp_path / "missing" / "deeper.yaml"):
        with pytest.raises(InputError):
            read_bytes(path, what="plan file")


def run_fast(run_cli, *args):
    began = time.monotonic()
    result = run_cli(*args)
    assert time.monotonic() - began < 1.5, f"{args} took {time.monotonic() - began:.1f} s"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.output
    return result.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_cli_arguments(run_cli, tmp_path, kind, solved_plan):
    bad = hostile(tmp_path / "bad", kind)
    plan = solved_plan(TINY, "--time-limit", "5")
    for args in (
        ("validate", bad),
        ("show", bad),
        ("simulate", plan, "--trace", bad),
        ("evaluate", plan, "--cluster", bad),
    ):
        assert str(bad) in run_fast(run_cli, *args)


@pytest.mark.parametrize("kind", KINDS)
def test_paths_named_inside_files_name_the_referring_file(run_cli, tmp_path, kind, solved_plan):
    bad = hostile(tmp_path / "bad.json", kind)
    plan = yaml.safe_load(solved_plan(TINY, "--time-limit", "5").read_text())
    plan["cluster"]["file"] = str(bad)
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    stderr = run_fast(run_cli, "evaluate", plan_file)
    assert f"{plan_file}: cluster.file" in stderr and str(bad) in stderr
    cluster = yaml.safe_load(TINY.read_text())
    for field, value in (("model", "bad.json"), ("workload", {"trace": "bad.json"})):
        path = tmp_path / f"cluster-{field}.yaml"
        path.write_text(yaml.safe_dump({**cluster, field: value}))
        stderr = run_fast(run_cli, "validate", path)
        assert f"{path}: {'model' if field == 'model' else 'workload.trace'}: " in stderr and str(bad) in stderr


@pytest.mark.parametrize("recorded", [".", "", "/", "a\x00b", "x" * 5000])
def test_odd_recorded_cluster_file_names_the_plan(run_cli, tmp_path, recorded, solved_plan):
    plan = yaml.safe_load(solved_plan(TINY, "--time-limit", "5").read_text())
    plan["cluster"]["file"] = recorded
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(plan))
    for command in ("evaluate", "check", "simulate"):
        assert f"{plan_file}: cluster.file" in run_fast(run_cli, command, plan_file)


def test_profiles_directory_with_a_fifo(run_cli, tmp_path):
    directory = tmp_path / "profiles"
    directory.mkdir()
    fifo = hostile(directory / "extra.yaml", "fifo")
    assert str(fifo) in run_fast(run_cli, "validate", TINY, "--profiles", directory)
    assert "x" * 300 in run_fast(run_cli, "validate", TINY, "--profiles", tmp_path / ("x" * 300))


def test_launcher_dry_run_refuses_a_fifo(tmp_path, capfd):
    from launcher.cli import main

    fifo = hostile(tmp_path / "plan.yaml", "fifo")
    began = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main([str(fifo), "--dry-run", "--state-dir", str(tmp_path / "state")])
    assert info.value.code == 2 and time.monotonic() - began < 1.5
    assert str(fifo) in capfd.readouterr().err
