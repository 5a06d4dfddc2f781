"""launcher.process_actor outside Ray: a process started in its own group, its log private, its pid record;
`stop_group` signals a recorded process only while pid *and* start time still match."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from launcher.process_actor import ProcessActor, ProcessRecord, read_record, start_time, stop_group


def test_an_actor_runs_logs_and_stops_its_process(tmp_path: Path) -> None:
    script = "import sys, time; print('hello from the engine', flush=True); time.sleep(60)"
    actor = ProcessActor("hx-1/r/0", [sys.executable, "-c", script], {"X": "1"}, str(tmp_path / "logs"))
    pid = actor.start()
    record = read_record(tmp_path / "logs" / "hx-1_r_0.pid")
    assert record == ProcessRecord(pid, start_time(pid), sys.executable) and record.alive_and_ours()
    deadline = time.monotonic() + 10
    while "hello from the engine" not in actor.logs():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert stat.S_IMODE((tmp_path / "logs" / "hx-1_r_0.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    assert actor.state() == "running" and os.getpgid(pid) == pid
    assert actor.stop(grace_s=5) == -15 and actor.state() == "exited (-15)"
    assert not (tmp_path / "logs" / "hx-1_r_0.pid").exists()


def test_stop_group_never_signals_a_recycled_or_foreign_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        real = ProcessRecord(sleeper.pid, start_time(sleeper.pid), sys.executable)
        assert not stop_group(ProcessRecord(sleeper.pid, real.start_time + 1, sys.executable))  # a recycled pid
        assert not stop_group(ProcessRecord(0, 0, "x")) and not stop_group(ProcessRecord(1, start_time(1) or 0, "x"))
        assert not stop_group(ProcessRecord(os.getpid(), start_time(os.getpid()), sys.executable))  # not a leader
        assert sleeper.poll() is None
        assert stop_group(real, grace_s=5)
        assert sleeper.wait(5) == -15
    finally:
        sleeper.kill()
        sleeper.wait()


def test_node_software_is_compared_with_the_pinned_versions() -> None:
    from launcher.node_check import PINNED, installed_versions, version_problems, wanted_packages

    assert wanted_packages("nixl") == PINNED and wanted_packages("mooncake") == {"vllm": PINNED["vllm"]}
    found = {
        "a100-0": {"vllm": PINNED["vllm"], "nixl": PINNED["nixl"]},
        "l40-0": {"vllm": "0.32.0", "nixl": None},
    }
    assert version_problems(found, PINNED) == [
        f"l40-0: nixl is not installed (pinned: nixl=={PINNED['nixl']}).",
        f"l40-0: vllm 0.32.0 is installed; the launcher is pinned to vllm=={PINNED['vllm']}.",
    ]
    assert installed_versions(("pydantic", "no-such-dist-hx")) == {
        "pydantic": __import__("pydantic").VERSION,
        "no-such-dist-hx": None,
    }
